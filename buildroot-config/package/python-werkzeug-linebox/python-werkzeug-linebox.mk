################################################################################
#
# python-werkzeug-linebox
#
################################################################################

# The web UI faces the office network for years: it runs the
# Werkzeug release it is tested with (3.1.9, with the security
# fixes after 3.1.3), not Buildroot 2025.02's 3.1.3.
# Buildroot has no way to bump an in-tree package from an external
# tree, so this package builds the newer release and installs it over
# python-werkzeug's files: it depends on python-werkzeug (installed first), removes
# that package's module and dist-info, then installs its own. Drop it
# when the Buildroot release in use ships 3.1.9 or later.
PYTHON_WERKZEUG_LINEBOX_VERSION = 3.1.9
PYTHON_WERKZEUG_LINEBOX_SOURCE = werkzeug-$(PYTHON_WERKZEUG_LINEBOX_VERSION).tar.gz
PYTHON_WERKZEUG_LINEBOX_SITE = https://files.pythonhosted.org/packages/source/w/werkzeug
PYTHON_WERKZEUG_LINEBOX_SETUP_TYPE = flit
PYTHON_WERKZEUG_LINEBOX_LICENSE = BSD-3-Clause
PYTHON_WERKZEUG_LINEBOX_LICENSE_FILES = LICENSE.txt
PYTHON_WERKZEUG_LINEBOX_DEPENDENCIES = python-werkzeug

define PYTHON_WERKZEUG_LINEBOX_REMOVE_TREE_RELEASE
	rm -rf $(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/werkzeug \
		$(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/werkzeug-$(PYTHON_WERKZEUG_VERSION).dist-info
endef
PYTHON_WERKZEUG_LINEBOX_PRE_INSTALL_TARGET_HOOKS += PYTHON_WERKZEUG_LINEBOX_REMOVE_TREE_RELEASE

$(eval $(python-package))
