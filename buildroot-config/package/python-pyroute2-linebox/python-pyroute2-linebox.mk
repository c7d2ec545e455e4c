################################################################################
#
# python-pyroute2-linebox
#
################################################################################

# Linebox's network monitor (hal/netmon) uses the asyncio API
# of pyroute2 0.9 (AsyncIPRoute); Buildroot 2025.02 has 0.8.1.
# Buildroot has no way to bump an in-tree package from an external
# tree, so this package builds the newer release and installs it over
# python-pyroute2's files: it depends on python-pyroute2 (installed first), removes
# that package's module and dist-info, then installs its own. Drop it
# when the Buildroot release in use ships 0.9.7 or later.
PYTHON_PYROUTE2_LINEBOX_VERSION = 0.9.7
PYTHON_PYROUTE2_LINEBOX_SOURCE = pyroute2-$(PYTHON_PYROUTE2_LINEBOX_VERSION).tar.gz
PYTHON_PYROUTE2_LINEBOX_SITE = https://files.pythonhosted.org/packages/source/p/pyroute2
PYTHON_PYROUTE2_LINEBOX_SETUP_TYPE = setuptools
PYTHON_PYROUTE2_LINEBOX_LICENSE = GPL-2.0+ or Apache-2.0
PYTHON_PYROUTE2_LINEBOX_LICENSE_FILES = LICENSE LICENSE.Apache-2.0 LICENSE.GPL-2.0-or-later
PYTHON_PYROUTE2_LINEBOX_DEPENDENCIES = python-pyroute2

define PYTHON_PYROUTE2_LINEBOX_REMOVE_TREE_RELEASE
	rm -rf $(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/pyroute2 \
		$(TARGET_DIR)/usr/lib/python$(PYTHON3_VERSION_MAJOR)/site-packages/pyroute2-$(PYTHON_PYROUTE2_VERSION).dist-info
endef
PYTHON_PYROUTE2_LINEBOX_PRE_INSTALL_TARGET_HOOKS += PYTHON_PYROUTE2_LINEBOX_REMOVE_TREE_RELEASE

$(eval $(python-package))
