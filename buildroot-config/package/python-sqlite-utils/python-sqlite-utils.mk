################################################################################
#
# python-sqlite-utils
#
################################################################################

PYTHON_SQLITE_UTILS_VERSION = 4.2.1
PYTHON_SQLITE_UTILS_SOURCE = sqlite_utils-$(PYTHON_SQLITE_UTILS_VERSION).tar.gz
PYTHON_SQLITE_UTILS_SITE = https://files.pythonhosted.org/packages/source/s/sqlite_utils
PYTHON_SQLITE_UTILS_SETUP_TYPE = setuptools
PYTHON_SQLITE_UTILS_LICENSE = Apache-2.0
PYTHON_SQLITE_UTILS_LICENSE_FILES = LICENSE

$(eval $(python-package))
