"""``python -m jwktool.testing``: the test authorization server, as ``jwktool-test-server``.

The program is :func:`jwktool.testing.serve.main`; when the ``[test]`` extra is
missing it says so in one line instead of a traceback.
"""

from __future__ import annotations

if __name__ == "__main__":
    try:
        from .serve import main
    except ImportError as exc:
        raise SystemExit(f"authserver: {exc}") from None
    raise SystemExit(main())
