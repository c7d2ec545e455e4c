################################################################################
#
# python-tabulate
#
################################################################################

PYTHON_TABULATE_VERSION = 0.10.0
PYTHON_TABULATE_SOURCE = tabulate-$(PYTHON_TABULATE_VERSION).tar.gz
PYTHON_TABULATE_SITE = https://files.pythonhosted.org/packages/source/t/tabulate
PYTHON_TABULATE_SETUP_TYPE = setuptools
PYTHON_TABULATE_LICENSE = MIT
PYTHON_TABULATE_LICENSE_FILES = LICENSE
PYTHON_TABULATE_DEPENDENCIES = host-python-setuptools-scm

$(eval $(python-package))
