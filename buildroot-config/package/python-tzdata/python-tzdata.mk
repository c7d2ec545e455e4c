################################################################################
#
# python-tzdata
#
################################################################################

PYTHON_TZDATA_VERSION = 2026.6
PYTHON_TZDATA_SOURCE = tzdata-$(PYTHON_TZDATA_VERSION).tar.gz
PYTHON_TZDATA_SITE = https://files.pythonhosted.org/packages/source/t/tzdata
PYTHON_TZDATA_SETUP_TYPE = setuptools
PYTHON_TZDATA_LICENSE = Apache-2.0
PYTHON_TZDATA_LICENSE_FILES = LICENSE

$(eval $(python-package))
