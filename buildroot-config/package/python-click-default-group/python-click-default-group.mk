################################################################################
#
# python-click-default-group
#
################################################################################

PYTHON_CLICK_DEFAULT_GROUP_VERSION = 1.2.4
PYTHON_CLICK_DEFAULT_GROUP_SOURCE = click_default_group-$(PYTHON_CLICK_DEFAULT_GROUP_VERSION).tar.gz
PYTHON_CLICK_DEFAULT_GROUP_SITE = https://files.pythonhosted.org/packages/source/c/click_default_group
PYTHON_CLICK_DEFAULT_GROUP_SETUP_TYPE = flit
PYTHON_CLICK_DEFAULT_GROUP_LICENSE = Public Domain
PYTHON_CLICK_DEFAULT_GROUP_LICENSE_FILES = LICENSE

$(eval $(python-package))
