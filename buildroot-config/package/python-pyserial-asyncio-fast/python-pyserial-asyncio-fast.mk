################################################################################
#
# python-pyserial-asyncio-fast
#
################################################################################

PYTHON_PYSERIAL_ASYNCIO_FAST_VERSION = 0.16
PYTHON_PYSERIAL_ASYNCIO_FAST_SOURCE = pyserial_asyncio_fast-$(PYTHON_PYSERIAL_ASYNCIO_FAST_VERSION).tar.gz
PYTHON_PYSERIAL_ASYNCIO_FAST_SITE = https://files.pythonhosted.org/packages/source/p/pyserial_asyncio_fast
PYTHON_PYSERIAL_ASYNCIO_FAST_SETUP_TYPE = setuptools
PYTHON_PYSERIAL_ASYNCIO_FAST_LICENSE = BSD-3-Clause
PYTHON_PYSERIAL_ASYNCIO_FAST_LICENSE_FILES = LICENSE.txt

$(eval $(python-package))
