"""`swarm auth login|logout|list`: the stored credentials (swarm.credentials).

Keys are read from a hidden prompt, from the variable named by --key-env, or from stdin
when it is not a terminal: never from the command line, where the process table shows
them to every user of the machine."""

from __future__ import annotations

import getpass
import json
import os
import sys
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from swarm.errors import BadInput, SwarmError

auth_app = typer.Typer(
    help="Stored credentials: log in (API key, OAuth, GitHub device flow), out, list.",
    no_args_is_help=True,
)
err = Console(stderr=True)
TERMS_NOTE = (
    "API keys are the supported route. An OAuth login to a consumer subscription may not "
    "be allowed for third-party tools under the provider's terms: check them first."
)


def _fail(exc: SwarmError) -> None:
    from swarm.cli import _fail as fail

    fail(exc)


def _known(provider: str) -> str:
    from swarm.providers.registry import DEFAULT_KEY_ENV

    if provider not in DEFAULT_KEY_ENV:
        raise BadInput(
            f"PROVIDER: unknown provider {provider!r} (known: {', '.join(DEFAULT_KEY_ENV)})"
        )
    return provider


def _oauth_config(provider: str, config: Path | None) -> Any:
    """The provider's OAuth settings: its preset, under ``providers.<provider>.oauth`` of
    ``config`` (a swarm config or any YAML file with a ``providers:`` mapping)."""
    from pydantic import ValidationError

    from swarm.credentials.settings import OAuthSettings, oauth_settings

    configured = None
    if config is not None:
        import yaml

        try:
            raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise BadInput(f"--config: cannot read {config}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise BadInput(f"--config: {config}: not valid YAML ({exc})") from None
        entry = ((raw.get("providers") or {}) if isinstance(raw, dict) else {}).get(provider) or {}
        if isinstance(entry, dict) and entry.get("oauth") is not None:
            try:
                configured = OAuthSettings.model_validate(entry["oauth"])
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise BadInput(
                    f"{config}: providers.{provider}.oauth.{where}: {first['msg']}"
                ) from None
    return oauth_settings(provider, configured)


def _read_key(key_env: str | None, provider: str) -> str:
    if key_env is not None:
        from swarm.config import ENV_NAME_RE

        if not ENV_NAME_RE.match(key_env):
            raise BadInput(f"--key-env: {key_env!r} is not an environment variable name")
        value = os.environ.get(key_env, "").strip()
        if not value:
            raise BadInput(f"--key-env: {key_env} is not set (or empty)")
        return value
    if sys.stdin.isatty():
        value = getpass.getpass(f"{provider} API key (input hidden): ").strip()
    else:
        value = sys.stdin.read().strip()
    if not value:
        raise BadInput(
            f"{provider}: no key given (type it at the prompt, pipe it on stdin, or use --key-env)"
        )
    if any(c.isspace() for c in value):
        raise BadInput(f"{provider}: the key contains whitespace; give one key, on one line")
    return value


def _read_line(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    err.print(prompt, end="", highlight=False, markup=False)
    return sys.stdin.readline()


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _login_pkce(provider: str, config: Path | None, no_browser: bool) -> Any:
    from swarm.credentials.oauth import PkceLogin, require

    settings = _oauth_config(provider, config)
    require(settings, provider, "client_id", "authorize_url", "token_url", "redirect_uri")
    login = PkceLogin(provider, settings)
    err.print(TERMS_NOTE, style="yellow", highlight=False)
    print(f"Open this URL, sign in, and paste the code you are given:\n{login.url}", flush=True)
    if not no_browser and _has_display():
        webbrowser.open(login.url)
    return login.exchange(_read_line("code: "))


def _login_device(provider: str, config: Path | None, no_browser: bool) -> Any:
    from swarm.credentials.device import DeviceCode, device_login
    from swarm.credentials.oauth import require

    settings = _oauth_config(provider, config)
    require(settings, provider, "client_id", "device_code_url", "token_url", "copilot_token_url")

    def show(code: DeviceCode) -> None:
        print(
            f"Enter the code {code.user_code} at {code.verification_uri} "
            f"(within {int(code.expires_in // 60)} min); waiting...",
            flush=True,
        )
        if not no_browser and _has_display() and code.verification_uri:
            webbrowser.open(code.verification_uri)

    return device_login(settings, show)


@auth_app.command("login")
def login(
    provider: Annotated[str, typer.Argument(help="anthropic | openai | mistral | copilot")],
    key_env: Annotated[
        str | None,
        typer.Option("--key-env", help="read the API key from this environment variable"),
    ] = None,
    oauth: Annotated[
        bool, typer.Option("--oauth", help="log in with OAuth (PKCE) instead of an API key")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML with providers.<name>.oauth (endpoints, client_id)"),
    ] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="only print the URL")] = False,
) -> None:
    """Store a credential: an API key (hidden prompt, stdin, or --key-env VAR), an OAuth
    login (--oauth), or for copilot the GitHub device flow."""
    from swarm.credentials import open_store

    try:
        _known(provider)
        store = open_store()
        if oauth:
            if key_env is not None:
                raise BadInput("--oauth and --key-env: give one of them")
            cred = _login_pkce(provider, config, no_browser)
        elif provider == "copilot" and key_env is None:
            from swarm.credentials.refresh import TokenSource

            store.put(provider, _login_device(provider, config, no_browser))
            TokenSource(provider, store).token()  # the first Copilot token: proves the login
            print(f"{provider}: logged in (GitHub device flow); stored in {store.where}")
            return
        else:
            from swarm.credentials import Credential

            cred = Credential(kind="api_key", key=_read_key(key_env, provider))
        store.put(provider, cred)
    except SwarmError as exc:
        _fail(exc)
    print(f"{provider}: stored {cred.kind} in {store.where}")


@auth_app.command("logout")
def logout(provider: Annotated[str, typer.Argument(help="provider name")]) -> None:
    """Remove a provider's stored credential (environment variables are not touched)."""
    from swarm.credentials import open_store

    try:
        _known(provider)
        store = open_store()
        removed = store.delete(provider)
    except SwarmError as exc:
        _fail(exc)
    print(f"{provider}: {'removed from ' + store.where if removed else 'no stored credential'}")


@auth_app.command("list")
def list_(
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Stored credentials: provider, kind, masked value, expiry, where stored; and whether
    an environment variable takes precedence over one."""
    from swarm.credentials import mask, open_store
    from swarm.providers.registry import DEFAULT_KEY_ENV

    try:
        store = open_store()
        creds = store.all()
    except SwarmError as exc:
        _fail(exc)
    rows: list[dict[str, Any]] = [
        {
            "provider": name,
            "kind": c.kind,
            "masked": mask(c.primary()),
            "expires": c.expiry_text(),
            "expires_at": c.expires_at,
            "where": store.where,
            "shadowed_by": (
                DEFAULT_KEY_ENV[name]
                if name in DEFAULT_KEY_ENV and os.environ.get(DEFAULT_KEY_ENV[name])
                else None
            ),
        }
        for name, c in sorted(creds.items())
    ]
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        print(f"no stored credentials ({store.where})")
        return
    print(f"stored in {store.where}:")  # one store at a time: said once
    table = Table("provider", "kind", "value", "expires", box=None)
    for r in rows:
        name = r["provider"] + (f" (overridden by {r['shadowed_by']})" if r["shadowed_by"] else "")
        table.add_row(name, r["kind"], r["masked"], r["expires"])
    Console().print(table, highlight=False)
