"""``PromptNode``: render a prompt template into OpenAI chat messages."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hush.core.errors import GraphDefinitionError, HushError
from hush.core.nodes.base import BaseNode
from hush.core.policies import RetryPolicy
from hush.core.refs import Ref

if TYPE_CHECKING:
    from hush.core.call import NodeCall

Message = dict[str, Any]
_ROLES = ("system", "user", "assistant")
_formatter = string.Formatter()


class PromptError(HushError, ValueError):
    """A prompt could not be rendered (bad shape or a missing variable)."""


def placeholders(template: str) -> list[str]:
    """Names used as ``{name}`` in ``template`` (``{{`` and ``}}`` are literal braces)."""
    names = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise PromptError(f"template {template!r} is malformed: {exc}") from None
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise PromptError(
                f"placeholder {{{field}}} in {template!r} is not a plain name; "
                "compute the value in a CodeNode and pass it as an input"
            )
        if spec or conv:
            raise PromptError(
                f"placeholder {{{field}}} in {template!r} has a format spec; pass a ready string"
            )
        names.append(field)
    return names


def _templates(prompt: Any) -> list[str]:
    """Every template string in ``prompt`` (content parts included); checks its shape."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, Mapping):
        unknown = set(prompt) - set(_ROLES)
        if unknown:
            raise PromptError(
                f"prompt dict keys must be {', '.join(_ROLES)}; got {sorted(unknown)}"
            )
        out: list[str] = []
        for role, value in prompt.items():
            if value is not None and not isinstance(value, str | list):
                raise PromptError(
                    f"prompt['{role}'] must be a string or a list of content parts, "
                    f"got {type(value).__name__}"
                )
            out.extend(_strings(value, f"prompt['{role}']"))
        return out
    if isinstance(prompt, list):
        out = []
        for i, msg in enumerate(prompt):
            if not isinstance(msg, Mapping) or "role" not in msg:
                raise PromptError(
                    f"prompt message {i} must be a dict with 'role' and 'content', got {msg!r}"
                )
            out.extend(_strings(msg.get("content"), f"prompt message {i}"))
        return out
    raise PromptError(
        f"prompt must be a string, a {{'system': ..., 'user': ...}} dict or a list of messages, "
        f"got {type(prompt).__name__}"
    )


def _strings(content: Any, where: str) -> list[str]:
    """The strings of a message content: itself, or every string value of its parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        for i, part in enumerate(content):
            if not isinstance(part, Mapping):
                raise PromptError(f"{where}: content part {i} must be a dict, got {part!r}")
        return [text for part in content for text in _values(part)]
    return []


def _values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for v in value.values() for text in _values(v)]
    if isinstance(value, list):
        return [text for v in value for text in _values(v)]
    return []


def _render(template: str, variables: Mapping[str, Any]) -> str:
    missing = [n for n in placeholders(template) if n not in variables]
    if missing:
        have = ", ".join(sorted(variables)) or "none"
        raise PromptError(f"prompt variable(s) {', '.join(missing)} have no input (inputs: {have})")
    return template.format_map(variables)


def _fill(content: Any, variables: Mapping[str, Any]) -> Any:
    """``content`` with every string (of every content part) rendered."""
    if isinstance(content, str):
        return _render(content, variables)
    if isinstance(content, Mapping):
        return {k: _fill(v, variables) for k, v in content.items()}
    if isinstance(content, list):
        return [_fill(v, variables) for v in content]
    return content


def render_messages(
    prompt: Any, variables: Mapping[str, Any], history: Any = None
) -> list[Message]:
    """Messages for ``prompt`` with ``{var}`` filled in and ``history`` after the system part.

    Placeholders are filled in plain string contents and in every string of
    multimodal content parts (``{"type": "text", "text": ...}``,
    ``{"type": "image_url", "image_url": {"url": ...}}``).
    """
    _templates(prompt)
    if history is not None and not isinstance(history, list):
        raise PromptError(f"history must be a list of messages, got {type(history).__name__}")
    for i, msg in enumerate(history or []):
        if not isinstance(msg, Mapping) or "role" not in msg:
            raise PromptError(
                f"history message {i} must be a dict with 'role' and 'content', got {msg!r}"
            )
    hist = [dict(m) for m in history or []]
    if isinstance(prompt, str):
        return [*hist, {"role": "user", "content": _render(prompt, variables)}]
    if isinstance(prompt, Mapping):
        msgs: list[Message] = []
        if prompt.get("system") is not None:
            msgs.append({"role": "system", "content": _fill(prompt["system"], variables)})
        msgs.extend(hist)
        for role in ("user", "assistant"):
            if prompt.get(role) is not None:
                msgs.append({"role": role, "content": _fill(prompt[role], variables)})
        return msgs
    rendered = []
    for msg in prompt:
        out = dict(msg)
        if "content" in out:
            out["content"] = _fill(out["content"], variables)
        rendered.append(out)
    split = next((i for i, m in enumerate(rendered) if m.get("role") != "system"), len(rendered))
    return [*rendered[:split], *hist, *rendered[split:]]


class PromptNode(BaseNode):
    """Renders ``inputs["prompt"]`` with the other inputs into ``messages``.

    The prompt is a string (one user message), a ``{"system": ..., "user": ...}``
    dict or a list of messages; ``{name}`` placeholders take the other inputs
    (``{{`` and ``}}`` for literal braces). An optional ``history`` input (a
    list of messages) goes between the system part and the rest.
    """

    kind = "prompt"

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any] | None = None,
        retry: int | RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name, inputs=inputs, outputs=outputs, retry=retry, timeout=timeout)
        if "prompt" not in self.inputs:
            raise GraphDefinitionError(f"PromptNode '{name}': inputs need a 'prompt'")

    def output_keys(self) -> frozenset[str] | None:
        """The rendered ``messages``."""
        return frozenset({"messages", "error"})

    def check(self) -> list[str]:
        """A literal prompt must be well formed and its variables must be inputs."""
        prompt = self.inputs["prompt"]
        if isinstance(prompt, Ref):
            return []
        try:
            names = {n for t in _templates(prompt) for n in placeholders(t)}
        except PromptError as exc:
            return [str(exc)]
        missing = sorted(names - set(self.inputs) - {"prompt"})
        if missing:
            return [f"prompt variable(s) {', '.join(missing)} have no input"]
        return []

    async def run(self, inputs: dict[str, Any], call: NodeCall) -> Mapping[str, Any] | None:
        """Render the messages."""
        variables = {k: v for k, v in inputs.items() if k not in ("prompt", "history")}
        try:
            return {"messages": render_messages(inputs["prompt"], variables, inputs.get("history"))}
        except PromptError as exc:
            raise PromptError(f"PromptNode '{self.name}': {exc}") from None
