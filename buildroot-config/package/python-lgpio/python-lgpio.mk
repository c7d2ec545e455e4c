################################################################################
#
# python-lgpio
#
################################################################################

PYTHON_LGPIO_VERSION = 0.2.2.0
PYTHON_LGPIO_SOURCE = lgpio-$(PYTHON_LGPIO_VERSION).tar.gz
PYTHON_LGPIO_SITE = https://files.pythonhosted.org/packages/source/l/lgpio
PYTHON_LGPIO_SETUP_TYPE = setuptools
PYTHON_LGPIO_LICENSE = Unlicense
PYTHON_LGPIO_LICENSE_FILES = LICENSE
PYTHON_LGPIO_DEPENDENCIES = host-swig
# PYPI=1: the sdist carries liblgpio's C sources and links them into
# the extension, so no separate lgpio library package is needed.
PYTHON_LGPIO_ENV = PYPI=1

$(eval $(python-package))
