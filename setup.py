"""The compiled comparison of attribute records (``resolver/matching/_ccompare.c``), and the scan for keys written
twice in a record (``schemas/_cjson.c``).

It is optional: where no C compiler is found, ``pip install`` goes on without it and the resolver compares
records with the Python definition (``resolver.matching.comparisons.compare_python``), which gives the same
levels, only slower. Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("resolver.matching._ccompare", ["resolver/matching/_ccompare.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off"]),
                   Extension("schemas._cjson", ["schemas/_cjson.c"], optional=True, extra_compile_args=["-O2"])])
