"""The settings of `kiln dev | gateway | worker` as options, derived from their declaration in
kiln/settings.py (each reads its KILN_* variable too), and the one-line error that names a
setting the way it was given: its flag, its variable, or both if neither."""

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, get_type_hints

import click
from click.core import ParameterSource

from kiln.settings import Flag, Settings, SettingsError, both_names, env_name, flag_name

F = TypeVar("F", bound=Callable[..., Any])


class Option(NamedTuple):
    setting: str
    commands: frozenset[str]
    help: str


def _options() -> list[Option]:
    """Every setting's option, in the order `Settings` declares them."""
    options = []
    for name, hint in get_type_hints(Settings, include_extras=True).items():
        (flag,) = (meta for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, Flag))
        options.append(Option(name, flag.commands, flag.help))
    return options


OPTIONS = _options()


def settings_options(command_name: str) -> Callable[[F], F]:
    """The options of the settings `command_name` uses, in the order declared."""

    def decorate(command: F) -> F:
        for option in reversed(OPTIONS):
            if command_name in option.commands:
                name, envvar = option.setting, env_name(option.setting)
                flag = click.option(flag_name(name), name, envvar=envvar, help=option.help)
                command = flag(command)
        return command

    return decorate


class BadSetting(click.ClickException):
    """`Error: bad setting NAME: why` in one line, exit 2 (as click's own usage errors)."""

    exit_code = 2


def named(ctx: click.Context, setting: str) -> str:
    """The setting as the command line was given it: flag, variable, or both if neither."""
    source = ctx.get_parameter_source(setting)
    if source is ParameterSource.COMMANDLINE:
        return flag_name(setting)
    if source is ParameterSource.ENVIRONMENT:
        return env_name(setting)
    return both_names(setting)


def bad_setting(ctx: click.Context, error: SettingsError) -> BadSetting:
    if not error.field:
        return BadSetting(f"bad setting: {error.detail}")
    return BadSetting(f"bad setting {named(ctx, error.field)}: {error.detail}")
