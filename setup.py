"""What pyproject.toml cannot say: config/ ships inside the wheel.

config/ (default.yaml and the cohort files) stays at the top of the repository
and is packaged as the data package ``synthpacs.defaults``, where
synthpacs/config.py looks first. pyproject.toml can map a folder to a package
only by listing every package, so the packages are found here instead: a new
module, subpackage or generator target needs no entry. Everything else about
the package (metadata, dependencies, package data) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

DATA_PACKAGE_DIRS = {"synthpacs.defaults": "config"}

setup(
    packages=find_namespace_packages(include=["synthpacs*", "generators*"], exclude=["*__pycache__"])
    + ["synthpacs.defaults", "synthpacs.defaults.cohorts"],
    package_dir=DATA_PACKAGE_DIRS,
)
