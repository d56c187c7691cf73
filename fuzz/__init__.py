"""Fuzz targets for every decoder of krill_crdt, run outside CI by ``python -m fuzz.run``.

Each ``fuzz_NAME.py`` module holds one target: a ``check_one(data)`` function that feeds one
input to a decoder and raises when the bad-input contract of ``DESIGN.md`` breaks (an error
outside the krill family, a crash, a changed document), plus a few valid seed inputs. The
same functions run briefly under hypothesis in ``tests/fuzz``.
"""
