"""The Jinja2 sandbox user templates run in (RELIABILITY.md F14).

Layers, each of which refuses with a `LimitExceeded` / `SecurityError` that the renderer turns
into a RenderError with a clear message, leaving the worker alive:

1. ImmutableSandboxedEnvironment: no underscore attributes, no mutating methods, plain data only.
   On top of it: callable attributes of plain data (str, list, dict, numbers, dates) are an
   allow-list of methods whose output is never larger than their input (no `ljust(10**9)`,
   `(1).to_bytes(10**9)`, `str.format` with widths...), and `str.format` is not special-cased.
2. Filters are an allow-list (the environment's filters are replaced, not extended), each wrapped
   so that it checks the render's deadline and that a string it returns stays under MAX_STRING;
   filters that multiply their input by an argument (center, indent, replace, join, batch, slice,
   wordwrap) check the size they would produce BEFORE they allocate.
3. `*`, `**`, `+` and `%` are intercepted (`'a' * 10**9` fails before it allocates), and `~`
   (concatenation) is compiled to a checked join.
4. The parsed template is rewritten (`_parse`) so every `{% for %}` iterates through a guard that
   counts iterations against a per-render budget, checks the deadline, and charges the loop body's
   static text per iteration to the output budget; every macro, call block and fragment charges
   its static text when it runs, and every `{{ expression }}` charges its size (out_escape /
   out_str at a part's top level, finalize elsewhere). So the output cannot pass MAX_OUTPUT (plus
   the parts' own static text, bounded by their size limits), loops cannot run past MAX_STEPS or
   the deadline even with no output, and nothing counts the output chunk by chunk (the hot path
   joins it in C).
5. Statically refused at compile (with a line): {% extends %} / {% block %}, recursive loops,
   attribute names starting with "_", includes/imports whose name is not a literal fragment key.

The per-render budget lives in a thread-local (renders in a threaded web server do not share it).
Modules: content.limits (the budget and the guards compiled templates call), content.filters (the
allowed filters), this one (the environment, its code generator and the AST rewrite).
"""

from __future__ import annotations

from datetime import date, datetime
from datetime import time as dtime
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from content.filters import build_filters
from content.limits import (  # noqa: F401 - re-exported: the renderer, the benchmark and tests use them here
    MAX_ALLOC,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_OUTPUT,
    MAX_RANGE,
    MAX_STEPS,
    MAX_STRING,
    TIME_LIMIT,
    Budget,
    LimitExceeded,
    _checked_join,
    _escape_inner,
    _local,
    allocate,
    begin,
    check_size,
    checked_concat,
    checked_value,
    current,
    deep_size,
    end,
    finalize,
    out_escape,
    out_str,
    safe_range,
)

# --- the environment -------------------------------------------------------------------------------

# Methods a template may call on plain data: none of them returns more than about its input.
_STR_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip", "rstrip", "startswith",
    "endswith", "split", "rsplit", "splitlines", "find", "rfind", "count", "isdigit", "isalpha", "isalnum",
    "isspace", "isupper", "islower", "isnumeric", "isdecimal", "partition", "rpartition", "removeprefix",
    "removesuffix",
})
_SEQ_METHODS = frozenset({"count", "index"})
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_DATE_METHODS = frozenset({"isoformat", "weekday", "isoweekday", "date", "time", "timestamp", "strftime"})
_NO_METHODS: frozenset[str] = frozenset()
_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS, Markup: _STR_METHODS, list: _SEQ_METHODS, tuple: _SEQ_METHODS, dict: _DICT_METHODS,
    int: _NO_METHODS, float: _NO_METHODS, bool: _NO_METHODS, date: _DATE_METHODS, datetime: _DATE_METHODS,
    dtime: _DATE_METHODS,
}


class _Undefined(ChainableUndefined):
    """Missing variables print as nothing, also along a chain (`profile.address.city`)."""

    __slots__ = ()


class _CodeGenerator(CodeGenerator):
    # Output accounting: static text is charged by the loop/macro/fragment guards; expressions
    # where they are printed: at a part's top level (the hot path) per run of output
    # (_top_level_output), elsewhere (macros, call and set blocks, fragments) through `finalize`.

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        if frame.buffer is None and self.name is None and not frame.require_output_check:
            self._top_level_output(node, frame)
            return
        super().visit_Output(node, frame)

    def _top_level_output(self, node: nodes.Output, frame: Frame) -> None:
        """A part's top level (the hot path): literal text is yielded as is; a run with expressions
        is ONE `yield environment.checked_concat((...))` (Jinja yields each piece: a generator
        resume apiece), which charges the run's size to the output budget once. A str value is
        escaped inline (C) with no call; anything else goes through out_escape / out_str."""
        pieces = [c for c in node.nodes if not (isinstance(c, nodes.TemplateData) and not c.data)]
        if not pieces:
            return
        if all(isinstance(c, nodes.TemplateData) for c in pieces):
            self.writeline(f"yield {''.join(c.data for c in pieces)!r}", node)
            return
        self.writeline("yield environment.checked_concat((", node)
        for child in pieces:
            self.newline(child)  # a generated line per piece: errors map to its template line
            if isinstance(child, nodes.TemplateData):
                self.write(repr(child.data))
            elif frame.eval_ctx.volatile:
                self.write("(environment.out_escape if context.eval_ctx.autoescape else environment.out_str)(")
                self.visit(child, frame)
                self.write(")")
            else:
                tmp = self.temporary_identifier()
                if frame.eval_ctx.autoescape:
                    self.write(f"(environment.esc({tmp}) if type({tmp} := ")
                    self.visit(child, frame)
                    self.write(f") is str else environment.out_escape({tmp}))")
                elif self.environment.markdown_v2:  # every value escaped for Telegram's MarkdownV2
                    self.write("environment.out_str(")
                    self.visit(child, frame)
                    self.write(")")
                else:
                    self.write(f"({tmp} if type({tmp} := ")
                    self.visit(child, frame)
                    self.write(f") is str else environment.out_str({tmp}))")
            self.write(",")
        self.write("))")

    # MarkdownV2 (Telegram): what a macro, a call block or a set block builds was escaped piece by
    # piece as it was built; mark it done so printing it does not escape it a second time.

    def return_buffer_contents(self, frame: Frame, force_unescaped: bool = False) -> None:
        # (Jinja passes force_unescaped for macro bodies and wraps them in Macro._invoke instead.)
        if self.environment.markdown_v2:
            self.writeline(f"return environment.md_done(concat({frame.buffer}))")
            return
        super().return_buffer_contents(frame, force_unescaped)

    def visit_AssignBlock(self, node: nodes.AssignBlock, frame: Frame) -> None:
        if not self.environment.markdown_v2:
            super().visit_AssignBlock(node, frame)
            return
        # Jinja's own, with md_done where it would wrap the captured text in Markup.
        self.push_assign_tracking()
        block_frame = frame.inner()
        block_frame.require_output_check = False
        block_frame.symbols.analyze_node(node)
        self.enter_frame(block_frame)
        self.buffer(block_frame)
        self.blockvisit(node.body, block_frame)
        self.newline(node)
        self.visit(node.target, frame)
        self.write(" = environment.md_done(")
        if node.filter is not None:
            self.visit_Filter(node.filter, block_frame)
        else:
            self.write(f"concat({block_frame.buffer})")
        self.write(")")
        self.pop_assign_tracking(frame)
        self.leave_frame(block_frame)

    @optimizeconst
    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # Jinja slices directly (`x[1:]`), past the sandbox: a slice is a copy, so it is charged.
        self.write("environment.getslice(")
        self.visit(node.node, frame)
        self.write(", slice(")
        for i, part in enumerate((node.arg.start, node.arg.stop, node.arg.step)):
            if i:
                self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write("))")

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        # `profile.first_name` on the plain-dict context: look the key up inline (no call); any
        # other object goes through the sandbox's checked getattr.
        tmp = self.temporary_identifier()
        attr = repr(node.attr)
        self.write(f"({tmp}[{attr}] if type({tmp} := ")
        self.visit(node.node, frame)
        self.write(f") is dict and {attr} in {tmp} else environment.getattr({tmp}, {attr}))")

    # `[a, a]`, `(a, a)`, `{"k": a}`: a structure built at render time is size-checked (see
    # limits.checked_value: shared references would double it per line); constants fold as usual.

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked_literal(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx == "store":
            super().visit_Tuple(node, frame)
            return
        self._checked_literal(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked_literal(super().visit_Dict, node, frame)

    def _checked_literal(self, visit: Any, node: nodes.Expr, frame: Frame) -> None:
        try:
            node.as_const(frame.eval_ctx)
        except nodes.Impossible:
            self.write("environment.checked_value(")
            visit(node, frame)
            self.write(")")
            return
        visit(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b`: join through a size check instead of Jinja's unchecked str_join/markup_join.
        markup = "context.eval_ctx.autoescape" if frame.eval_ctx.volatile else repr(bool(frame.eval_ctx.autoescape))
        self.write("environment.checked_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(f"), {markup})")


class _MdDone(str):
    """Text already escaped for MarkdownV2 (a macro's or a set block's output)."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\_*[]()~`>#+-=|{}.!"})


def md_escape(value: Any) -> str:
    """Escape a value for Telegram's MarkdownV2 (every reserved character gets a backslash);
    markup marked safe (`|safe`) is left as it is."""
    if hasattr(value, "__html__"):
        return str(value)
    return str(value).translate(_MD_SPECIAL)


def _md_out_str(value: Any) -> str:
    return value if hasattr(value, "__html__") else out_str(value).translate(_MD_SPECIAL)


def _md_finalize(value: Any) -> Any:
    value = finalize(value)
    return value if hasattr(value, "__html__") else md_escape(value)


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, markdown_v2: bool = False, **kwargs: Any) -> None:
        """markdown_v2: a Telegram text with parse_mode MarkdownV2. Every `{{ value }}` is escaped
        for it (a name like "Anna_Maria" or a price "9.99" would otherwise break the whole message
        with "can't parse entities"); the author's own markup is literal text and stays as written;
        `|safe` prints a value as markup on purpose."""
        kwargs.setdefault("undefined", _Undefined)
        kwargs.setdefault("auto_reload", False)  # sources never change under a compiled version
        kwargs.setdefault("cache_size", 100)
        self.markdown_v2 = markdown_v2
        super().__init__(finalize=_md_finalize if markdown_v2 else finalize, **kwargs)
        self.filters = build_filters()
        self.globals = {"range": safe_range}
        self.checked_join = _checked_join
        self.out_escape = out_escape
        self.out_str = _md_out_str if markdown_v2 else out_str
        self.md_done = _MdDone
        self.esc = _escape_inner
        self.checked_concat = checked_concat
        self.checked_value = checked_value

    # -- attribute access --

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Plain dicts are the whole context: look the key up first (no exception on the hot path).
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        allowed = _METHODS.get(type(obj))
        if allowed is not None and callable(value):
            return attr in allowed
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is not an allowed method at all (see _STR_METHODS)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} is not allowed")

    # -- calls and operators --

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        b = _local.budget
        if b is not None:
            b._tick()
        rv = super().call(__context, __obj, *args, **kwargs)
        if isinstance(rv, str):
            allocate(len(rv))
        elif isinstance(rv, (list, tuple)):
            allocate(deep_size(rv))
        return rv

    def getslice(self, obj: Any, argument: slice) -> Any:
        """`x[a:b:c]` (see _CodeGenerator.visit_Getitem): a slice is a copy, so it is charged."""
        rv = self.getitem(obj, argument)
        if isinstance(rv, (str, list, tuple)):
            allocate(len(rv))
        return rv

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    per = len(seq) if isinstance(seq, str) else deep_size(seq)
                    check_size(per * max(n, 0))
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded("the template computes a number that is too large")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                    and left.bit_length() * right > MAX_INT_BITS):
                raise LimitExceeded("the template computes a number that is too large")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            check_size((len(left) if isinstance(left, str) else deep_size(left))
                       + (len(right) if isinstance(right, str) else deep_size(right)))
        elif operator == "%" and isinstance(left, str):
            raise SecurityError("the % string formatting operator is not allowed; use ~ or filters")
        return super().call_binop(context, operator, left, right)

    # -- the AST rewrite --

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        harden(tree, name, filename)
        tree.set_environment(self)  # the guard nodes added above need it (constant folding)
        return tree


def _fail(message: str, node: nodes.Node, name: str | None, filename: str | None) -> None:
    raise TemplateSyntaxError(message, node.lineno, name, filename)


def harden(tree: nodes.Template, name: str | None = None, filename: str | None = None) -> None:
    """Refuse what the sandbox does not support, then add the budget guards (see module doc)."""
    for node in tree.find_all((nodes.Extends, nodes.Block)):
        _fail("{% extends %} and {% block %} are not supported: include fragments instead", node, name, filename)
    for node in tree.find_all(nodes.Getattr):
        if node.attr.startswith("_"):
            _fail(f"access to attribute {node.attr!r} is not allowed", node, name, filename)
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            _fail(f"access to attribute {node.arg.value!r} is not allowed", node, name, filename)
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport)):
        if not (isinstance(node.template, nodes.Const) and isinstance(node.template.value, str)):
            _fail("include and import need a fragment key in quotes, e.g. {% include \"footer\" %}", node, name,
                  filename)
    for node in tree.find_all(nodes.For):
        if node.recursive:
            _fail("recursive loops are not supported", node, name, filename)
    for node in list(tree.find_all(nodes.For)):
        node.iter = nodes.Filter(node.iter, "_loop", [nodes.Const(_static(node.body))], [], None, None,
                                 lineno=node.lineno)
    for node in list(tree.find_all((nodes.Macro, nodes.CallBlock))):
        node.body.insert(0, _enter(_static(node.body), node.lineno))
    if name is not None:
        # A fragment (included or imported, maybe many times): charge its static text per use.
        # A part's own top level runs once per message, and its static text is bounded by the part
        # size limits: no charge needed on the hot path.
        tree.body.insert(0, _enter(_static(tree.body), 1))


def _enter(static: int, lineno: int) -> nodes.Output:
    return nodes.Output([nodes.Filter(nodes.Const(""), "_enter", [nodes.Const(static)], [], None, None, lineno=lineno)],
                        lineno=lineno)


def _static(body: list[nodes.Node]) -> int:
    """Characters of literal output a body produces when it runs once (not counting nested loops,
    macros and call blocks, which charge their own)."""
    size = 0
    for node in body:
        size += _static_node(node)
    return size


def _static_node(node: nodes.Node) -> int:
    if isinstance(node, nodes.Output):
        size = 0
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                size += len(child.data)
            elif isinstance(child, nodes.Const):
                size += len(str(child.value))
        return size
    if isinstance(node, nodes.For):
        return _static(node.else_)
    if isinstance(node, (nodes.Macro, nodes.CallBlock)):
        return 0
    size = 0
    for child in node.iter_child_nodes():
        if isinstance(child, (nodes.Stmt, nodes.Output)):
            size += _static_node(child)
    return size
