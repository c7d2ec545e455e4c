################################################################################
#
# python-sqlite-fts4
#
################################################################################

PYTHON_SQLITE_FTS4_VERSION = 1.0.3
PYTHON_SQLITE_FTS4_SOURCE = sqlite-fts4-$(PYTHON_SQLITE_FTS4_VERSION).tar.gz
PYTHON_SQLITE_FTS4_SITE = https://files.pythonhosted.org/packages/source/s/sqlite-fts4
PYTHON_SQLITE_FTS4_SETUP_TYPE = setuptools
PYTHON_SQLITE_FTS4_LICENSE = Apache-2.0
PYTHON_SQLITE_FTS4_LICENSE_FILES = LICENSE

$(eval $(python-package))
