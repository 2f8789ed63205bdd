"""Settings for the kafka-python clients, from the validated config.

Secrets are resolved here and only here: from the config (``SecretStr``),
an environment variable or a file. The resolved dict goes straight to the
client constructors; it is never logged, and errors name the setting, never
its value.

>>> from detector.config import KafkaConfig
>>> cfg = KafkaConfig.model_validate({"bootstrap_servers": ["b:9092"], "security": {
...     "protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc",
...     "sasl_password_env": "KPASS"}})
>>> kw = client_kwargs(cfg, environ={"KPASS": "s3cret"})
>>> kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_password"]
('SASL_SSL', 'SCRAM-SHA-512', 's3cret')
>>> client_kwargs(cfg, environ={})
Traceback (most recent call last):
...
detector.service.clients.SecretError: kafka.security.sasl_password_env: the environment variable KPASS is not set
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from detector.config import KafkaConfig

__all__ = ["client_kwargs", "SecretError", "secret_value"]


class SecretError(ValueError):
    """A secret named by the config cannot be read (the message names the setting, not the value)."""


def secret_value(path: str, value: SecretStr | None, env: str | None, file: str | None,
                 environ: Mapping[str, str] | None = None) -> str | None:
    """A secret given in the config, by an environment variable or by a file; ``path`` names the setting
    in errors (``receivers.0.secret`` -> ``receivers.0.secret_env: ...``).

    >>> secret_value("receivers.0.secret", None, "PD_KEY", None, environ={})
    Traceback (most recent call last):
    ...
    detector.service.clients.SecretError: receivers.0.secret_env: the environment variable PD_KEY is not set
    """
    environ = os.environ if environ is None else environ
    if value is not None:
        return value.get_secret_value()
    if env is not None:
        got = environ.get(env)
        if got is None:
            raise SecretError(f"{path}_env: the environment variable {env} is not set")
        return got
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise SecretError(f"{path}_file: cannot read the file {file}") from None
    return None


def _secret(field: str, value: SecretStr | None, env: str | None, file: str | None,
            environ: Mapping[str, str]) -> str | None:
    return secret_value(f"kafka.security.{field}", value, env, file, environ)


def client_kwargs(cfg: KafkaConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Connection and security settings shared by the consumer, producer and admin clients."""
    env = os.environ if environ is None else environ
    sec = cfg.security
    kw: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "security_protocol": sec.protocol,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": int(cfg.max_backoff_s * 1000),
    }
    if sec.protocol.startswith("SASL"):
        kw["sasl_mechanism"] = sec.sasl_mechanism
        kw["sasl_plain_username"] = sec.sasl_username
        kw["sasl_plain_password"] = _secret("sasl_password", sec.sasl_password, sec.sasl_password_env,
                                            sec.sasl_password_file, env)
    if sec.protocol.endswith("SSL"):
        kw["ssl_check_hostname"] = sec.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(sec, name) is not None:
                kw[name] = getattr(sec, name)
        password = _secret("ssl_password", sec.ssl_password, sec.ssl_password_env, sec.ssl_password_file, env)
        if password is not None:
            kw["ssl_password"] = password
    return kw
