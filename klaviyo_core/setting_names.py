"""Unknown settings stop the run, in one line that names them and the closest known setting.

A misspelled setting is otherwise silently ignored: ``start_dat`` turns a first run into a
full-history sync without a word. Every name a plugin does not know is an error, not only
close misspellings: a far-off name is usually a setting of another connector (a Hub variant's
``auth_token``), which this one would ignore just as silently. Meltano passes only the settings
meltano.yml declares (plus any custom ``config`` key), so a Meltano user meets this check for
names written by hand, exactly where a typo hides.
"""

from __future__ import annotations

import copy
import difflib
import typing as t

from klaviyo_core.settings import config_error

if t.TYPE_CHECKING:
    from singer_sdk.plugin_base import PluginBase


def known_settings(plugin: type[PluginBase]) -> set[str]:
    """The top-level settings a plugin accepts: its own and the SDK's built-in ones.

    ``append_builtin_config`` is the SDK's public hook that adds stream maps, flattening
    and the like to the config schema (and what ``--about`` lists).
    """
    schema = copy.deepcopy(plugin.config_jsonschema)
    plugin.append_builtin_config(schema)
    return set(schema.get("properties") or ())


def closest_setting(name: str, known: t.Iterable[str]) -> str | None:
    """The known setting a misspelled name most likely meant (case and separators ignored)."""
    known = sorted(known)
    normalized = {_normalize(setting): setting for setting in known}
    if _normalize(name) in normalized:
        return normalized[_normalize(name)]
    matches = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_setting_names(config: t.Mapping[str, t.Any], plugin: type[PluginBase]) -> None:
    """Raise a one-line ConfigValidationError naming every unknown setting and its likely fix."""
    known = known_settings(plugin)
    unknown = sorted(name for name in config if name not in known)
    if not unknown:
        return
    described = []
    for name in unknown:
        guess = closest_setting(name, known)
        described.append(f"{name} (did you mean {guess}?)" if guess else name)
    many = len(unknown) > 1
    raise config_error(
        f"Unknown setting{'s' if many else ''} {', '.join(described)}: fix or remove "
        f"{'them' if many else 'it'} (`{plugin.name} --about` lists every setting)."
    )


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")
