"""Settings typed by their schema: from ``<PLUGIN>_<SETTING>`` variables (``--config=ENV``), and numbers given as text.

The SDK's own parser leaves numbers and objects as text, so ``TAP_KLAVIYO_RATE_LIMIT_SHARE=0.5``
failed validation ("'0.5' is not of type 'number'"). Meltano exports every declared setting that has a
value, defaults included, to the plugin's environment, which is what the ``test`` command of
meltano.yml (``--config=ENV --test``) relies on.

Meltano 4.4 cannot pass a ``kind: decimal`` setting set from an environment variable (it crashes
writing the config file: "Object of type Decimal is not JSON serializable"), so meltano.yml declares
the decimal settings as strings and Meltano passes ``"0.5"``: a number setting given as text that
reads as a number is taken as that number. Text that does not (``"half"``) is left for the schema
check to name.
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


def with_typed_config(plugin: t.Any, kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
    """A plugin's constructor arguments with the config typed: ``parse_env_config`` done here instead of by
    the SDK (environment variables win over the config file, as with the SDK's parser), numbers from text."""
    config = kwargs.get("config") or {}
    if not isinstance(config, dict):
        return kwargs  # a path (deprecated): leave it all to the SDK
    schema = copy.deepcopy(plugin.config_jsonschema)
    plugin.append_builtin_config(schema)  # the SDK's settings too (stream_maps...), as its parser reads them
    if kwargs.get("parse_env_config"):
        prefix = plugin.name.upper().replace("-", "_") + "_"
        from_env = env_config(schema, prefix)
        # (The SDK then logs "Skipping parse of env var settings": this parse replaced its own.)
        logging.getLogger(plugin.name).info("Read %d setting(s) from %s* environment variables.", len(from_env), prefix)
        config = {**config, **from_env}
    return {**kwargs, "config": numbers_from_text(schema, config), "parse_env_config": False}


def numbers_from_text(schema: t.Mapping[str, t.Any], config: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The config with number and integer settings given as text (Meltano's ``"0.5"``) as numbers."""
    typed = dict(config)
    for name, spec in (schema.get("properties") or {}).items():
        value = config.get(name)
        if isinstance(value, str) and _types(spec) & {"number", "integer"}:
            typed[name] = _typed(value.strip(), _types(spec) & {"number", "integer"})
    return typed
