"""``--config=ENV``: settings from ``<PLUGIN>_<SETTING>`` environment variables, typed by the settings' schema.

The SDK's own parser leaves numbers and objects as text, so ``TAP_KLAVIYO_RATE_LIMIT_SHARE=0.5``
failed validation ("'0.5' is not of type 'number'"). Meltano exports every declared setting that has a
value, defaults included, to the plugin's environment, which is what the ``test`` command of
meltano.yml (``--config=ENV --test``) relies on.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import typing as t

TRUTHY = ("true", "1", "yes", "on", "y", "t")


def env_config(schema: t.Mapping[str, t.Any], prefix: str, environ: t.Mapping[str, str] | None = None) -> dict:
    """The settings set in the environment, converted to their schema's JSON type where they parse."""
    environ = os.environ if environ is None else environ
    config: dict[str, t.Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        variable = prefix + name.upper().replace("-", "_")
        if variable in environ:
            config[name] = _typed(environ[variable], _types(spec))
    return config


def _types(spec: t.Mapping[str, t.Any]) -> set[str]:
    declared = spec.get("type") or [kind for option in spec.get("anyOf", ()) for kind in _types(option)]
    return {declared} if isinstance(declared, str) else set(declared)


def _typed(text: str, types: set[str]) -> t.Any:
    """The value as its type; text that does not parse stays text, so validation names the setting."""
    try:
        if "integer" in types:
            return int(text)
        if "number" in types:
            return float(text)
    except ValueError:
        return text
    if "boolean" in types:
        return text.strip().lower() in TRUTHY
    if types & {"object", "array"} and text.strip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "array" in types:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def with_typed_env_config(plugin: t.Any, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
    """A plugin's constructor arguments with ``parse_env_config`` done here, typed, instead of by the SDK.

    Environment variables win over the config file, as with the SDK's parser.
    """
    if not kwargs.get("parse_env_config"):
        return kwargs
    config = kwargs.get("config") or {}
    if not isinstance(config, dict):
        return kwargs  # a path (deprecated): leave it all to the SDK
    schema = copy.deepcopy(plugin.config_jsonschema)
    plugin.append_builtin_config(schema)  # the SDK's settings too (stream_maps...), as its parser reads them
    prefix = plugin.name.upper().replace("-", "_") + "_"
    from_env = env_config(schema, prefix)
    # (The SDK then logs "Skipping parse of env var settings": this parse replaced its own.)
    logging.getLogger(plugin.name).info("Read %d setting(s) from %s* environment variables.", len(from_env), prefix)
    return {**kwargs, "config": {**config, **from_env}, "parse_env_config": False}

