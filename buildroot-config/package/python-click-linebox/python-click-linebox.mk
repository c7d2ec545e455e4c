################################################################################
#
# python-click-linebox
#
################################################################################

# sqlite-utils 4.x needs click >= 8.3.1 and Buildroot 2025.02
# has 8.1.8 (python-click, selected by python-flask).
# Buildroot has no way to bump an in-tree package from an external
# tree, so this package builds the newer release and installs it over
# python-click's files: it depends on python-click (installed first), removes
# that package's module and dist-info, then installs its own. Drop it
# when the Buildroot release in use ships 8.5.1 or later.
PYTHON_CLICK_LINEBOX_VERSION = 8.5.1
PYTHON_CLICK_LINEBOX_SOURCE = click-$(PYTHON_CLICK_LINEBOX_VERSION).tar.gz
PYTHON_CLICK_LINEBOX_SITE = https://files.pythonhosted.org/packages/source/c/click
PYTHON_CLICK_LINEBOX_SETUP_TYPE = flit
PYTHON_CLICK_LINEBOX_LICENSE = BSD-3-Clause
PYTHON_CLICK_LINEBOX_LICENSE_FILES = LICENSE.txt
PYTHON_CLICK_LINEBOX_DEPENDENCIES = python-click

define PYTHON_CLICK_LINEBOX_REMOVE_TREE_RELEASE
	rm -rf $(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/click \
		$(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/click-$(PYTHON_CLICK_VERSION).dist-info
endef
PYTHON_CLICK_LINEBOX_PRE_INSTALL_TARGET_HOOKS += PYTHON_CLICK_LINEBOX_REMOVE_TREE_RELEASE

$(eval $(python-package))
