"""Plugins: packages that add to stylenada's registries (CLIP sources, metrics, caption lists, commands).

A plugin is a module named in the ``stylenada.plugins`` entry-point group of an installed package; loading
it registers its additions. The library itself never imports a plugin by name, so a domain such as the
shapes world (``stylenada.toy.plugin``, declared in this package's own ``pyproject.toml``) is one more
plugin, and a new domain needs no edit of the library:

    [project.entry-points."stylenada.plugins"]
    mydomain = "mypackage.stylenada_plugin"
"""

from __future__ import annotations

import logging

GROUP = "stylenada.plugins"
log = logging.getLogger(__name__)
_loaded: list[str] = []


def load_plugins() -> list[str]:
    """Import every registered plugin once (later calls return at once); returns their names."""
    if _loaded:
        return _loaded
    from importlib.metadata import entry_points

    _loaded.append("")  # mark as done before importing, so a plugin that calls back does not recurse
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
            _loaded.append(ep.name)
        except Exception as e:  # a broken plugin must not take the library down with it
            log.warning("stylenada plugin %r (%s) failed to load: %s", ep.name, ep.value, e)
    return _loaded


__all__ = ["GROUP", "load_plugins"]
