"""Loading and saving datasets: one entry point, the format inferred from the source.

=================  =====================================================
format             source
=================  =====================================================
``inkml``          a directory of ``.inkml`` files (CROHME), or one file
``detexify-sql``   detexify's PostgreSQL dump (``.sql``), read with no server
``couchdb-json``   detexify/CouchDB JSON (``.json``)
``npz``            our cache (``.npz``)
``store``          our memory-mapped store: a directory ``NAME.strokes/`` of ``.npy`` files
``hasy``           HASYv2 images: its directory (holding ``hasy-data-labels.csv``), or that
                   file; gives an :class:`strokes.images.ImageDataset` (no strokes)
``postgres``       a ``postgresql://`` or ``postgres://`` DSN (or ``format="postgres"``
                   with an empty DSN to use the ``PG*`` environment variables)
``sqlite``         a SQLite file (``.sqlite``, ``.sqlite3``, ``.db``) holding detexify's
                   ``samples (id, key, strokes)`` table, e.g. a store of taught symbols
                   (see ``strokes.io.user_symbols``)
``synthetic``      the string ``"synthetic"``: the built-in generated data
``builtin``        the name of real data shipped inside the package:
                   ``"crohme-mini"`` (see :data:`BUILTIN`)
=================  =====================================================
"""

from __future__ import annotations

from pathlib import Path

from ..dataset import StrokeDataset

__all__ = ["load", "save", "infer_format", "import_to_store", "builtin_path", "FORMATS", "BUILTIN"]

FORMATS = ("inkml", "detexify-sql", "couchdb-json", "npz", "store", "hasy", "postgres", "sqlite", "synthetic", "builtin")

#: Real data shipped inside the package, by name (``strokes.load(name)``):
#: ``crohme-mini`` is 6,000-odd CROHME 2013 training symbols from whole writers, the
#: default data of ``strokes bench``; its provenance and terms are in
#: ``strokes/data/crohme-mini.md`` next to the file.
BUILTIN = {"crohme-mini": "crohme-mini.npz"}


def builtin_path(name: str) -> Path:
    """The file of the shipped data set ``name`` (a key of :data:`BUILTIN`)."""
    if name not in BUILTIN:
        raise ValueError(f"no shipped data set {name!r}; shipped: {', '.join(BUILTIN)}")
    path = Path(__file__).resolve().parent.parent / "data" / BUILTIN[name]
    if not path.exists():
        raise FileNotFoundError(f"the shipped data set {name!r} is missing from this install ({path}); reinstall strokes")
    return path


def infer_format(source) -> str:
    """The format name for ``source`` (see the module table); ValueError if unknown."""
    s = str(source)
    if s.startswith(("postgresql://", "postgres://")) or (s.startswith(("host=", "dbname=")) and "=" in s):
        return "postgres"
    if s == "synthetic" or s.startswith("synthetic:"):
        return "synthetic"
    if s in BUILTIN:
        return "builtin"
    p = Path(s)
    from .hasy import is_hasy

    if is_hasy(p):
        return "hasy"
    if p.is_dir():
        from .store import is_store

        return "store" if is_store(p) else "inkml"
    suffix = p.suffix.lower()
    by_suffix = {".inkml": "inkml", ".sql": "detexify-sql", ".json": "couchdb-json", ".npz": "npz"}
    by_suffix.update({s: "sqlite" for s in (".sqlite", ".sqlite3", ".db")})  # user_symbols.SQLITE_SUFFIXES
    if suffix in by_suffix:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        return by_suffix[suffix]
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {p}")
    raise ValueError(
        f"cannot tell the format of {s!r} from its name; pass format= one of {', '.join(FORMATS)}"
    )


def load(source, *, format: str | None = None, **options):
    """Load a dataset from any supported source (see the module table).

    Returns a :class:`strokes.StrokeDataset`, or for HASYv2 (``hasy``) a
    :class:`strokes.images.ImageDataset` (options ``ink``, ``size``, ``folds``:
    see :func:`strokes.io.hasy.load_hasy`).

    Options go to the format's loader: ``progress`` (bool, or None for auto),
    ``limit`` (read at most this many files/rows), ``max_points`` (per sample),
    ``key_style`` ("command" or "key", detexify), ``table`` and ``columns``
    (PostgreSQL, SQLite and dumps). Bad records are skipped and listed in ``ds.skipped``.
    """
    fmt = format or infer_format(source)
    if fmt == "inkml":
        from .inkml import load_inkml

        return load_inkml(source, **options)
    if fmt == "detexify-sql":
        from .detexify import load_detexify_sql

        return load_detexify_sql(source, **options)
    if fmt == "couchdb-json":
        from .detexify import load_couchdb_json

        return load_couchdb_json(source, **options)
    if fmt == "npz":
        from .npz import load_npz

        return load_npz(source, **options)
    if fmt == "store":
        from .store import load_store

        return load_store(source, **options)
    if fmt == "hasy":
        from .hasy import load_hasy

        return load_hasy(source, **options)
    if fmt == "postgres":
        from .postgres import load_postgres

        return load_postgres(str(source) if source else None, **options)
    if fmt == "sqlite":
        from .user_symbols import load_sqlite

        return load_sqlite(source, **options)
    if fmt == "builtin":
        from .npz import load_npz

        ds = load_npz(builtin_path(str(source)), **options)
        ds.info["builtin"] = str(source)
        return ds
    if fmt == "synthetic":
        from ..synthetic import generate, parse_spec

        return generate(**{**parse_spec(str(source)), **options})
    raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def save(ds: StrokeDataset, path, **options) -> None:
    """Write ``ds`` atomically: ``.npz`` (ours), ``.strokes`` (memory-mapped store) or ``.sql``
    (detexify dump), by extension."""
    if not isinstance(ds, StrokeDataset):
        raise ValueError(
            f"{type(ds).__name__} holds images, not strokes; the .npz, .strokes and .sql formats store strokes "
            "(load HASYv2 from its directory instead)"
        )
    suffix = Path(path).suffix.lower()
    if suffix == ".strokes":
        from .store import save_store

        save_store(ds, path, **options)
    elif suffix == ".npz":
        from .npz import save_npz

        save_npz(ds, path, **options)
    elif suffix == ".sql":
        from .detexify import save_detexify_sql

        save_detexify_sql(ds, path, **options)
    else:
        raise ValueError(
            f"cannot save to {path}: use a .npz (our cache), .strokes (memory-mapped store) or .sql (detexify dump) name"
        )


def import_to_store(source, path, *, format: str | None = None, **options) -> StrokeDataset:
    """Convert ``source`` into a memory-mapped store at ``path``; returns it, opened.

    Detexify dumps and PostgreSQL tables are streamed into the store chunk by
    chunk, so peak memory does not grow with the size of the source; other
    formats are loaded first, then written.
    """
    from .store import StoreWriter, save_store

    fmt = format or infer_format(source)
    if fmt in ("detexify-sql", "postgres"):
        writer = StoreWriter(path, overwrite=True)
        try:
            if fmt == "detexify-sql":
                from .detexify import load_detexify_sql

                writer.name = str(source)
                return load_detexify_sql(source, builder=writer, **options)
            from .postgres import load_postgres, redact_dsn

            writer.name = redact_dsn(str(source)) if source else "(PG* environment)"
            return load_postgres(str(source) if source else None, builder=writer, **options)
        except BaseException:
            writer.abort()
            raise
    if fmt == "hasy":
        raise ValueError("HASYv2 holds images, not strokes: a .strokes store cannot hold it; load it from its directory")
    ds = load(source, format=fmt, **options)
    save_store(ds, path)
    from .store import load_store

    return load_store(path)
