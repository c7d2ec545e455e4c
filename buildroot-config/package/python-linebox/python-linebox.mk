################################################################################
#
# python-linebox
#
################################################################################

# The firmware is built from this very repository (the external tree is its
# buildroot-config/ folder). Keep the version equal to pyproject.toml's.
PYTHON_LINEBOX_VERSION = 0.1.0
PYTHON_LINEBOX_SITE = $(BR2_EXTERNAL_LINEBOX_PATH)/..
PYTHON_LINEBOX_SITE_METHOD = local
PYTHON_LINEBOX_SETUP_TYPE = setuptools
# Only the Python packages and pyproject.toml are needed: not the virtual
# environment, the caches, the tests or the image build output (which lives
# under images/ and would otherwise be copied into itself).
PYTHON_LINEBOX_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude .venv --exclude .cache --exclude images --exclude tests \
	--exclude bench --exclude var --exclude buildroot-config \
	--exclude '*.egg-info' --exclude __pycache__

$(eval $(python-package))
