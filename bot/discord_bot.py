"""Discord adapter: app commands and buttons -> ``AvatarRequest`` -> service -> embed with a file.

Every interaction is answered at once: a refusal as an ephemeral message, anything admitted with a
deferred "thinking..." response that the picture replaces. Buttons carry their state in their
custom id (``bot.actions``), so they keep working after a restart: the reply's actions in the first
row, its hair colour buttons in the rows below, five a row.

``/avatar`` offers ``hair`` and ``eyes`` as choices of every colour name ``gan.colours`` knows; a
style that cannot draw the one picked (or has no colour directions) refuses it with the colours it has.

``/style train|list|status|cancel|delete|default`` manage a server's custom styles (``bot.styles``):
members with Manage Server only, checked here in code. A job's progress is one channel message,
edited as it goes.

Texts that quote users or data are fitted to Discord's limits (``bot.text``): 2000 characters of
message content; an embed's title 256, description 4096, field values 1024, footer 2048.

Replies speak the user's language (``interaction.locale``, ``bot.i18n``). Command and option
descriptions are ``locale_str``s that ``CatalogueTranslator`` translates when the commands are
synced, so Discord shows them in Chinese (``zh-CN`` Simplified, ``zh-TW`` Traditional) and
Japanese; command and option names stay English. The ``hair`` and ``eyes`` choices show translated
names but give the English colour word, so a command reproduces the same face in every language.
"""

from __future__ import annotations

import asyncio
import io
import logging

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.actions import Action, is_action
from bot.errors import APOLOGY, UserError
from bot.i18n import DEFAULT, Text, _, normalize_locale, translations
from bot.replies import COLOUR_NAMES, COLOUR_ROW, Command, Reply
from bot.requests import AvatarRequest
from bot.service import AvatarService
from bot.styles import StyleDesk, is_gate_button, typed_style
from bot.text import clip, fit
from gan.colours import EYE_COLOURS, HAIR_COLOURS

log = logging.getLogger(__name__)

COLOUR = discord.Colour(0xF47FFF)
# Discord refuses longer texts (400 Invalid Form Body), and the user would get only the apology.
CONTENT_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
STYLE_OPTION = _("Which style to draw in (see /styles)")
HELP = _("""**Anime avatar faces from a GAN.** The same seed always gives the same face, on Discord and Telegram.
`/avatar` a random face, `/avatar seed:42` that seed's face, `/avatar name:Alice` a name's own face
`/avatar count:4` a grid of neighbouring seeds; `style:` picks a style (`/styles` lists them)
`truncation:` 0.05-1: lower gives more typical faces; `variation:` 1-4 picks a face from Variations
`hair:` and `eyes:` pick a hair and eye colour, e.g. `/avatar seed:42 hair:blue eyes:red` (styles with colour controls)
`/morph from:42 to:Alice` an animated morph between two faces
Server admins (Manage Server) train custom styles: `/style train name:ink zip:<a .zip of pictures>`,
then `/style list`, `/style status`, `/style cancel`, `/style delete`, `/style default`
Buttons: **Reroll** a new face, **Variations** four nearby faces, **Upscale** a 512 px file, **Morph** a GIF;
under a face, one per hair colour redraws it with that hair.""")
NO_LONGER_WORKS = _("That button no longer works; try /avatar.")


def loc(text: Text) -> app_commands.locale_str:
    """A marked message as discord.py's translatable string (``CatalogueTranslator`` translates it)."""
    return app_commands.locale_str(text.message)


def colour_choices(colours: tuple[str, ...]) -> list[app_commands.Choice[str]]:
    """Choices of colours from ``gan.colours``, shown translated (``bot.replies.COLOUR_NAMES``), each
    giving its English word, which the service, the reproducing command and the PNG metadata use."""
    return [app_commands.Choice(name=loc(COLOUR_NAMES[c]), value=c) for c in colours]


class CatalogueTranslator(app_commands.Translator):
    """Command, option and group descriptions, and choice names, from the gettext catalogues
    (``bot.i18n``), for every Discord locale that normalises to one of them; None (Discord shows the
    English) otherwise. Command, group and option names are never translated: users type them, and
    they must stay the same in every language (a choice sends its value, whatever its name shows)."""

    NAMES = (app_commands.TranslationContextLocation.command_name,
             app_commands.TranslationContextLocation.group_name,
             app_commands.TranslationContextLocation.parameter_name)

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        language = normalize_locale(locale.value)
        if language == DEFAULT or context.location in self.NAMES:
            return None
        translated = translations(language).gettext(string.message)
        return translated if translated != string.message else None


def _locale(interaction: discord.Interaction) -> str:
    """The language to answer this user in."""
    return normalize_locale(interaction.locale.value if interaction.locale else None)


def use_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Point discord.py at another REST base and gateway (for tests against a local fake)."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def command_line(command: Command) -> str:
    """A reply's reproducing command in Discord's syntax, e.g. ``/avatar seed:42 style:default``."""
    return " ".join([f"/{command.name}"] + [f"{k}:{v}" for k, v in command.args])


def _chat_id(interaction: discord.Interaction) -> str:
    return str(interaction.guild_id) if interaction.guild_id else f"dm-{interaction.channel_id}"


def _request(interaction: discord.Interaction, **options) -> AvatarRequest:
    options["style"] = typed_style(options.get("style"))  # text too long to name a style is quoted back cut
    return AvatarRequest("discord", str(interaction.user.id), _chat_id(interaction), locale=_locale(interaction),
                         **options)


def _content(text: str, locale: str = DEFAULT) -> str:
    """A message's content fitted to Discord's limit."""
    return fit(text, CONTENT_LIMIT, locale)


def _message(reply: Reply, locale: str = DEFAULT) -> tuple[dict, discord.ui.View | None]:
    description = f"`{command_line(reply.command)}`" + (f"\n{reply.hint}" if reply.hint else "")
    embed = discord.Embed(title=clip(reply.title, EMBED_TITLE_LIMIT), colour=COLOUR,
                          description=clip(description, EMBED_DESCRIPTION_LIMIT))
    for name, value in reply.fields:
        embed.add_field(name=name, value=clip(value, FIELD_VALUE_LIMIT), inline=True)
    embed.set_image(url=f"attachment://{reply.filename}")
    # The command line that draws the same pixels, for those who run the bot's code themselves.
    weights = _("weights {sha}").format(sha=reply.weights_sha256[:12]).render(locale)
    embed.set_footer(text=clip(weights + (f" · {reply.cli}" if reply.cli else ""), FOOTER_LIMIT))
    view = None
    if reply.actions:
        view = discord.ui.View(timeout=None)
        for action in reply.actions:
            style = discord.ButtonStyle.primary if action.verb == "r" else discord.ButtonStyle.secondary
            view.add_item(discord.ui.Button(label=action.label, custom_id=action.encode(), style=style, row=0))
        for i, action in enumerate(reply.colours):
            view.add_item(discord.ui.Button(label=action.label, custom_id=action.encode(), row=1 + i // COLOUR_ROW,
                                            style=discord.ButtonStyle.secondary))
    file = discord.File(io.BytesIO(reply.data), filename=reply.filename)
    return {"content": None, "embed": embed, "attachments": [file]}, view


class AvatarCog(commands.Cog):
    """/avatar, /morph, /styles, /help and the buttons under every picture."""

    def __init__(self, service: AvatarService, desk: StyleDesk) -> None:
        self.service = service
        self.desk = desk

    async def serve(self, interaction: discord.Interaction, request: AvatarRequest) -> None:
        """Admit (or refuse, ephemerally), defer, draw, reply; every failure is answered."""
        locale = request.locale
        try:
            job = self.service.admit(request)
        except UserError as exc:
            await interaction.response.send_message(_content(exc.render(locale), locale), ephemeral=True)
            return
        async with job:
            try:
                await interaction.response.defer(thinking=True)
                reply = await job.run()
                fields, view = _message(reply, locale)
                await interaction.edit_original_response(**fields, view=view)
                job.sent()
                if view is not None:
                    view.stop()  # the ids carry the state: nothing to keep in memory
            except UserError as exc:
                await interaction.edit_original_response(content=_content(exc.render(locale), locale))
            except Exception:
                log.exception("could not answer Discord interaction %s (%s)", interaction.id, request.kind)
                try:
                    await interaction.edit_original_response(content=APOLOGY.render(locale), embed=None,
                                                             attachments=[])
                except discord.HTTPException:
                    pass

    @app_commands.command(name="avatar", description=loc(_("Draw an anime avatar face")))
    @app_commands.describe(
        seed=loc(_("Whole number from 0 to 9223372036854775807: the same seed always gives the same face")),
        name=loc(_("Any name: it always gives the same face (instead of a seed)")),
        style=loc(STYLE_OPTION),
        count=loc(_("How many neighbouring seeds to draw as a grid (1-4)")),
        truncation=loc(_("0.05 to 1: lower gives more typical faces, 1 the most varied (default: the style's)")),
        variation=loc(_("1-4: one of the faces the Variations button shows (0: the seed's own face)")),
        hair=loc(_("Hair colour (styles with colour controls)")),
        eyes=loc(_("Eye colour (styles with colour controls)")),
    )
    @app_commands.choices(hair=colour_choices(HAIR_COLOURS), eyes=colour_choices(EYE_COLOURS))
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    async def avatar(self, interaction: discord.Interaction, seed: str | None = None, name: str | None = None,
                     style: str | None = None, count: int = 1, truncation: float | None = None,
                     variation: int = 0, hair: str | None = None, eyes: str | None = None) -> None:
        await self.serve(interaction, _request(interaction, seed=seed, name=name, style=style, count=count,
                                               truncation=truncation, variation=variation, hair=hair, eyes=eyes))

    @app_commands.command(name="morph", description=loc(_("An animated GIF morphing one face into another")))
    @app_commands.rename(start="from", end="to")
    @app_commands.describe(start=loc(_("Seed or name of the first face")), end=loc(_("Seed or name of the last face")),
                           style=loc(STYLE_OPTION),
                           truncation=loc(_("0.05 to 1: lower gives more typical faces (default: the style's)")))
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    async def morph(self, interaction: discord.Interaction, start: str, end: str, style: str | None = None,
                    truncation: float | None = None) -> None:
        await self.serve(interaction, _request(interaction, kind="morph", seed=start, target=end, style=style,
                                               truncation=truncation))

    @avatar.autocomplete("style")
    @morph.autocomplete("style")
    async def style_autocomplete(self, interaction: discord.Interaction,
                                 current: str) -> list[app_commands.Choice[str]]:
        names = self.service.registry.names("discord", _chat_id(interaction))
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n][:25]

    @app_commands.command(name="styles", description=loc(_("The styles you can draw in here")))
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    async def styles(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            self.desk.list_text("discord", _chat_id(interaction), bold=True, limit=CONTENT_LIMIT,
                                locale=_locale(interaction)), ephemeral=True)

    @app_commands.command(name="help", description=loc(_("How to use the avatar bot")))
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.allowed_installs(guilds=True, users=True)
    async def help_(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(HELP.render(_locale(interaction)), ephemeral=True)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Buttons: the custom id says what to do, whoever clicks and whenever."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = (interaction.data or {}).get("custom_id")
        if not is_action(custom_id):
            return
        try:
            action = Action.decode(custom_id)
        except ValueError:
            log.warning("ignoring a damaged button id")
            await interaction.response.send_message(NO_LONGER_WORKS.render(_locale(interaction)), ephemeral=True)
            return
        await self.serve(interaction, AvatarRequest.from_action(action, "discord", str(interaction.user.id),
                                                                _chat_id(interaction), _locale(interaction)))


def _sample_file(picture: bytes) -> discord.File:
    return discord.File(io.BytesIO(picture), filename="samples.png")


class DiscordProgress:
    """A job's progress as a channel message (``ProgressChannel``): an interaction token expires after
    15 minutes, a channel message does not."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    def command_line(self, command: Command) -> str:
        return command_line(command)

    def _channel(self, target: dict) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(int(target["channel"]))

    async def post(self, target: dict, text: str) -> dict:
        message = await self._channel(target).send(_content(text))
        return {**target, "message": message.id}

    async def edit(self, target: dict, text: str, picture: bytes | None = None) -> None:
        message = self._channel(target).get_partial_message(int(target["message"]))
        if picture is None:
            await message.edit(content=_content(text))
        else:
            await message.edit(content=_content(text), attachments=[_sample_file(picture)])

    async def announce(self, target: dict, text: str, picture: bytes | None = None,
                       buttons: list[tuple[str, str]] | None = None) -> None:
        extra: dict = {}
        if buttons:
            view = discord.ui.View(timeout=None)
            for label, custom_id in buttons:
                view.add_item(discord.ui.Button(label=label, custom_id=custom_id, style=discord.ButtonStyle.secondary))
            extra["view"] = view
        if picture is not None:
            extra["file"] = _sample_file(picture)
        await self._channel(target).send(_content(text), **extra)


@app_commands.default_permissions(manage_guild=True)  # a hint for the server; checked in code below
class StyleCog(commands.GroupCog, group_name="style",
               group_description=loc(_("Custom styles trained from this server's pictures (Manage Server)"))):
    """/style train, list, status, cancel, delete, default."""

    def __init__(self, desk: StyleDesk) -> None:
        self.desk = desk
        super().__init__()

    @staticmethod
    async def _refused(interaction: discord.Interaction) -> bool:
        """Answer and return True unless the member may manage this server's styles."""
        if interaction.guild_id is None:
            message = _("Custom styles belong to a server: use /style in a server where you have Manage Server.")
        elif not interaction.permissions.manage_guild:
            message = _("Sorry, only members with the Manage Server permission can manage this server's styles.")
        else:
            return False
        await interaction.response.send_message(message.render(_locale(interaction)), ephemeral=True)
        return True

    async def _answer(self, interaction: discord.Interaction, coro, ephemeral: bool = True) -> None:
        """Send the text ``coro`` returns, or its ``UserError``, ephemerally."""
        locale = _locale(interaction)
        try:
            text = await coro
        except UserError as exc:
            text = exc.render(locale)
        await interaction.response.send_message(_content(text, locale), ephemeral=ephemeral)

    @app_commands.command(name="train", description=loc(_("Train a new style for this server from a zip of pictures")))
    @app_commands.rename(pictures="zip")
    @app_commands.describe(
        name=loc(_("The new style's name: lowercase letters, digits and '-', up to 32 characters")),
        pictures=loc(_("A .zip of pictures in the style (JPEG, PNG or WEBP; at least 20)")),
        steps=loc(_("Training steps (optional; more is slower and closer to your pictures)")),
    )
    async def train(self, interaction: discord.Interaction, name: str, pictures: discord.Attachment,
                    steps: int | None = None) -> None:
        if await self._refused(interaction):
            return
        locale = _locale(interaction)
        try:
            self.desk.check_upload_size(pictures.size)
        except UserError as exc:
            await interaction.response.send_message(_content(exc.render(locale), locale), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        try:
            upload = await pictures.read()
            text = await self.desk.train("discord", str(interaction.guild_id), str(interaction.user.id), name,
                                         upload, steps, {"channel": interaction.channel_id}, locale)
        except UserError as exc:
            text = exc.render(locale)
        except discord.HTTPException as exc:
            log.warning("could not download attachment %s: %s", pictures.filename, exc)
            text = _("I could not download that file from Discord; please try again.").render(locale)
        except Exception:
            log.exception("/style train failed in server %s", interaction.guild_id)
            text = APOLOGY.render(locale)
        await interaction.edit_original_response(content=_content(text, locale))

    @app_commands.command(name="list", description=loc(_("This server's styles, built-in and custom")))
    async def list_(self, interaction: discord.Interaction) -> None:
        if not await self._refused(interaction):
            await interaction.response.send_message(
                self.desk.list_text("discord", str(interaction.guild_id), bold=True, limit=CONTENT_LIMIT,
                                    locale=_locale(interaction)), ephemeral=True)

    @app_commands.command(name="status", description=loc(_("How this server's style training is going")))
    async def status(self, interaction: discord.Interaction) -> None:
        if not await self._refused(interaction):
            await self._answer(interaction, self.desk.status_text("discord", str(interaction.guild_id),
                                                                  _locale(interaction)))

    @app_commands.command(name="cancel", description=loc(_("Stop this server's style training")))
    async def cancel(self, interaction: discord.Interaction) -> None:
        if not await self._refused(interaction):
            locale = _locale(interaction)
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                text = await self.desk.cancel("discord", str(interaction.guild_id), str(interaction.user.id), locale)
            except UserError as exc:
                text = exc.render(locale)
            await interaction.edit_original_response(content=_content(text, locale))

    @app_commands.command(name="delete", description=loc(_("Delete one of this server's custom styles")))
    @app_commands.describe(name=loc(_("The custom style to delete")))
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        if not await self._refused(interaction):
            await self._answer(interaction, self.desk.delete("discord", str(interaction.guild_id), name,
                                                             _locale(interaction)))

    @app_commands.command(name="default", description=loc(_("The style /avatar uses here when none is given")))
    @app_commands.describe(name=loc(_("A built-in or custom style")))
    async def default(self, interaction: discord.Interaction, name: str) -> None:
        if not await self._refused(interaction):
            await self._answer(interaction, self.desk.set_default("discord", str(interaction.guild_id), name,
                                                                  _locale(interaction)), ephemeral=False)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Publish and Discard under a style the quality gate held back: Manage Server only."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = (interaction.data or {}).get("custom_id")
        if not is_gate_button(custom_id) or await self._refused(interaction):
            return
        guild = str(interaction.guild_id)
        await self._answer(interaction, self.desk.gate_button("discord", guild, custom_id, _locale(interaction)),
                           ephemeral=False)
        if interaction.message is not None and self.desk.gate_settled("discord", guild, custom_id):
            try:
                await interaction.message.edit(view=None)
            except discord.HTTPException as exc:
                log.warning("could not take the buttons off message %s: %s", interaction.message.id, exc)

    @delete.autocomplete("name")
    @default.autocomplete("name")
    async def name_autocomplete(self, interaction: discord.Interaction,
                                current: str) -> list[app_commands.Choice[str]]:
        chat = str(interaction.guild_id or "")
        names = self.desk.custom_names("discord", chat)
        if interaction.command is not None and interaction.command.name == "default":
            names = self.desk.registry.names("discord", chat)
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n][:25]


class AvatarBot(commands.AutoShardedBot):
    """The Discord client: gets the service and the style desk in ``__init__``, loads the cogs in
    ``setup_hook``."""

    def __init__(self, service: AvatarService, desk: StyleDesk, guild_ids: list[int] | None = None,
                 sync_commands: bool = True, shard_count: int | None = None) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents(guilds=True),
                         help_command=None, shard_count=shard_count)
        self.service = service
        self.desk = desk
        self.guild_ids = guild_ids or []
        self.sync_commands = sync_commands

    async def setup_hook(self) -> None:
        await self.add_cog(AvatarCog(self.service, self.desk))
        await self.add_cog(StyleCog(self.desk))
        self.desk.add_channel("discord", DiscordProgress(self))
        self.tree.on_error = self.on_app_command_error
        await self.tree.set_translator(CatalogueTranslator())
        if not self.sync_commands:
            return
        if self.guild_ids:  # appear in these servers at once (global commands take a while)
            for gid in self.guild_ids:
                guild = discord.Object(gid)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to server %s", len(synced), gid)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("Discord: logged in as %s (%s) in %d servers", self.user, self.user.id if self.user else "?",
                 len(self.guilds))

    async def on_app_command_error(self, interaction: discord.Interaction,
                                   error: app_commands.AppCommandError) -> None:
        """Anything the cog did not handle: log once with the traceback, apologise."""
        log.error("app command %s failed", interaction.command and interaction.command.name, exc_info=error)
        apology = APOLOGY.render(_locale(interaction))
        try:
            if interaction.response.is_done():
                await interaction.followup.send(apology, ephemeral=True)
            else:
                await interaction.response.send_message(apology, ephemeral=True)
        except discord.HTTPException:
            pass


class DiscordPlatform:
    """Runs ``AvatarBot`` inside the shared event loop."""

    name = "discord"

    def __init__(self, settings, service: AvatarService, desk: StyleDesk) -> None:
        self.settings = settings
        self.bot = AvatarBot(service, desk, settings.discord_guild_ids, settings.discord_sync_commands,
                             settings.discord_shard_count)

    async def start(self) -> asyncio.Task:
        """Log in, then keep the gateway connection in a task (returned)."""
        use_endpoints(self.settings.discord_api_base, self.settings.discord_gateway_url)
        await self.bot.login(self.settings.discord_token.get_secret_value())
        return asyncio.create_task(self.bot.connect(reconnect=True), name="discord")

    @property
    def is_alive(self) -> bool:
        """Logged in, ready, and every shard's gateway connection open (for the health check)."""
        shards = self.bot.shards.values()
        return (not self.bot.is_closed() and self.bot.is_ready() and bool(shards)
                and not any(shard.is_closed() for shard in shards))

    async def stop_receiving(self) -> None:
        """Discord keeps delivering interactions; the service now refuses them politely."""

    async def stop(self) -> None:
        await self.bot.close()
