#!/usr/bin/env python3
"""Writes libnq's section 3 manual pages from its public header.

    gen-man.py HEADER MAP OUT_DIR

HEADER is abi/include/nq/nq.h, MAP abi/libnq.map (it tells in which release
each function appeared).  OUT_DIR receives libnq.3, the overview, and one
page per public function (nq_open.3, ...); the *.3 files already there are
removed first, so a function taken out of the header loses its page.

The header is the manual: every page is made of its declarations and of
the comments right above them, so nothing here restates what a function
does.  A function without a comment, or missing from the map, is an error.

The pages' date is SOURCE_DATE_EPOCH's when it is set (as in a Debian
build), so that a rebuild gives the same pages; otherwise today's, as for
nq(1), which CMake makes from tools/nq/nq.1.in.
Python 3 standard library only.
"""

import datetime
import os
import re
import sys
import textwrap

# ---------------------------------------------------------------------------
# The header as a list of items
# ---------------------------------------------------------------------------


class Item:
    """A comment and the declarations right below it (up to a blank line
    or the next comment), under the header's current banner."""

    def __init__(self, section, comment):
        self.section = section
        self.comment = comment  # lines, common indentation removed; or []
        self.code = []  # lines as written
        self.index = None  # its place in the header

    def code_text(self):
        return "\n".join(self.code)


def strip_comments(code):
    return re.sub(r"/\*.*?\*/", " ", code, flags=re.S)


def comment_lines(raw):
    """The text of a /* ... */ comment given as its source lines: the
    markers and the leading " * " of each line go, deeper indentation
    stays."""
    text = "\n".join(raw).strip()
    lines = text[2:-2].split("\n")
    out = []
    for i, line in enumerate(lines):
        if i > 0:
            line = re.sub(r"^\s*\*( |$)", "", line)
        out.append(line.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if not out:
        return []
    # The first line follows "/* " directly; later ones keep their own
    # indentation relative to it.
    out[0] = out[0].strip()
    return out


def is_banner_rule(line):
    return re.fullmatch(r"/\*\s*-{10,}\s*\*/", line.strip()) is not None


def parse_header(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")

    items = []
    section = ""
    current = None
    depth = 0  # braces open in the current item's code
    cond = 0  # preprocessor conditionals open; 1 is the include guard
    guard = None
    file_comment = []
    i = 0

    def flush():
        nonlocal current
        if current is not None and (current.code or current.comment):
            current.index = len(items)
            items.append(current)
        current = None

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if depth == 0 and line.startswith("/*"):
            raw = [line]
            while "*/" not in raw[-1]:
                i += 1
                raw.append(lines[i])
            i += 1
            if cond > 1:
                continue
            if is_banner_rule(raw[0]):
                # /* ---- */ /* Title */ /* ---- */
                title = lines[i].strip()[2:-2].strip()
                if not is_banner_rule(lines[i + 1]):
                    raise SystemExit(f"gen-man.py: {path}:{i + 2}: a banner ends with a rule")
                i += 2
                flush()
                section = title
                continue
            flush()
            text = comment_lines(raw)
            if guard is None and cond == 0:
                file_comment = text
                continue
            current = Item(section, text)
            continue

        i += 1
        if depth == 0 and re.match(r"#\s*(if|ifdef|ifndef)\b", stripped):
            cond += 1
            m = re.match(r"#\s*ifndef\s+(\w+)", stripped)
            if cond == 1 and m:
                guard = m.group(1)
            continue
        if depth == 0 and re.match(r"#\s*endif\b", stripped):
            cond -= 1
            continue
        if depth == 0 and re.match(r"#\s*(elif|else)\b", stripped):
            continue
        if cond > 1 or (guard and stripped == "#define " + guard):
            continue
        if depth == 0 and re.match(r"#\s*include\b", stripped):
            continue
        if depth == 0 and not stripped:
            flush()
            continue
        if current is None:
            current = Item(section, [])
        current.code.append(line)
        code = strip_comments("\n".join(current.code))
        depth = code.count("{") - code.count("}")
    flush()
    return file_comment, items


class Function:
    def __init__(self, item, ret, name, params):
        self.item = item
        self.ret = ret.strip()
        self.name = name
        self.params = [p.strip() for p in params.split(",")]
        self.node = None  # the symbol version, NQ_1.x


def functions_of(items):
    found = []
    for item in items:
        code = re.sub(r"\s+", " ", strip_comments(item.code_text()))
        for m in re.finditer(r"\bNQ_API\s+([^;]*?)\b(nq_\w+)\s*\(([^)]*)\)\s*;", code):
            found.append(Function(item, m.group(1), m.group(2), m.group(3)))
    return found


def read_map(path):
    """{symbol: version node} from the linker version script."""
    nodes = {}
    node = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            m = re.match(r"(NQ_[0-9.]+)\s*\{", line)
            if m:
                node = m.group(1)
                continue
            m = re.fullmatch(r"(nq_\w+);", line)
            if m and node:
                nodes[m.group(1)] = node
    return nodes


# ---------------------------------------------------------------------------
# Types: what a function's page shows besides the function
# ---------------------------------------------------------------------------


class Type:
    def __init__(self, name, kind, item):
        self.name = name
        self.kind = kind  # "enum", "struct" (with a body), "callback", "opaque"
        self.item = item


def types_of(items):
    types = {}
    for item in items:
        code = strip_comments(item.code_text())
        for m in re.finditer(r"typedef\s+enum\s+\w*\s*\{[^}]*\}\s*(\w+)\s*;", code):
            types[m.group(1)] = Type(m.group(1), "enum", item)
        for m in re.finditer(r"typedef\s+struct\s+\w*\s*\{[^}]*\}\s*(\w+)\s*;", code):
            types[m.group(1)] = Type(m.group(1), "struct", item)
        for m in re.finditer(r"typedef\s+struct\s+\w+\s+(\w+)\s*;", code):
            types[m.group(1)] = Type(m.group(1), "opaque", item)
        for m in re.finditer(r"typedef\s+[^;(]*\(\s*\*\s*(\w+)\s*\)\s*\([^;]*\)\s*;", code):
            types[m.group(1)] = Type(m.group(1), "callback", item)
    return types


def referenced_types(text, types):
    return [types[name] for name in dict.fromkeys(re.findall(r"\bnq_\w+\b", text)) if name in types]


def reach(func, types):
    """The types a page about func shows: those its prototype names, then,
    through structs and callbacks, those they name (in their code or its
    comments: "int type; /* an nq_event_type */").  Returns (shown,
    described): shown in the synopsis (structs and callbacks, in header
    order), described in the text (callbacks, what a callback is handed,
    and enums)."""
    shown, described = {}, {}
    queue = [(t, None) for t in referenced_types(" ".join(func.params), types)]
    seen = set()
    while queue:
        t, parent = queue.pop(0)
        if t.name in seen:
            continue
        seen.add(t.name)
        if t.kind == "opaque":
            continue
        if t.kind == "enum":
            described[t.name] = t
            continue
        shown[t.item.index] = t.item
        if t.kind == "callback" or (parent is not None and parent.kind == "callback"):
            described[t.name] = t
        for u in referenced_types(t.item.code_text(), types):
            queue.append((u, t))
    return [shown[k] for k in sorted(shown)], list(described.values())


def enum_members(item):
    """[(name, value, comment lines)] of the enum in item, each with the
    comment above it or beside it."""
    members = []
    pending = []
    body = item.code_text()
    body = body[body.index("{") + 1 : body.rindex("}")]
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        if line.startswith("/*"):
            raw = [line]
            while "*/" not in raw[-1]:
                raw.append(lines[i])
                i += 1
            pending = comment_lines([raw[0]] + [re.sub(r"^\s*", " ", r) for r in raw[1:]])
            continue
        m = re.match(r"(\w+)\s*=\s*([^,/]+?)\s*,?\s*(/\*.*\*/)?\s*$", line)
        if not m:
            raise SystemExit(f"gen-man.py: cannot read the enum member '{line}'")
        comment = pending
        if m.group(3):
            comment = comment_lines([m.group(3)])
        members.append((m.group(1), m.group(2), comment))
        pending = []
    return members


# ---------------------------------------------------------------------------
# Comment text to troff
# ---------------------------------------------------------------------------

FUNCTION_NAMES = set()


def escape(text):
    """Plain text for troff: backslashes and minus signs escaped."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def inline(text):
    """One sentence of comment text, escaped and marked up: function names
    and NQ_ constants in bold, `code` in bold, *word* in italics."""
    text = escape(text)
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    text = re.sub(r"(?<![\w*])\*([A-Za-z][\w]*)\*(?![\w*])", r"\\fI\1\\fR", text)

    def bold(m):
        word = m.group(0)
        if word in FUNCTION_NAMES or word.startswith("NQ_"):
            return "\\fB" + word + "\\fR"
        return word

    return re.sub(r"\b(?:nq_\w+|NQ_\w+)\b", bold, text)


def line_out(text):
    """A line of troff input holding text (never read as a request)."""
    if text.startswith((".", "'")):
        return "\\&" + text
    return text


def text_lines(sentence):
    """A sentence as troff input lines of at most 80 bytes where its
    words allow: one sentence per line, wrapped."""
    wrapped = textwrap.wrap(sentence, 78, break_long_words=False, break_on_hyphens=False)
    return [line_out(l) for l in wrapped]


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def blocks(lines):
    """Comment lines as blocks: ("para", text), ("bullets", [text]),
    ("pre", [lines]) and ("heading", text)."""
    out = []
    lines = list(lines)
    base = min((indent_of(l) for l in lines if l.strip()), default=0)
    lines = [l[base:] for l in lines]
    i = 0

    def join(parts):
        # Sentences end in two spaces; one that ends a line gets them too.
        text = ""
        for part in parts:
            part = part.strip()
            if text:
                text += "  " if re.search(r'[.?!]["\')]?$', text) else " "
            text += part
        return text

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            out.append(("heading", line.strip()))
            i += 2
            continue
        if line.startswith("- "):
            bullets = []
            while i < len(lines) and lines[i].startswith("- "):
                parts = [lines[i][2:]]
                i += 1
                while i < len(lines) and lines[i].strip() and indent_of(lines[i]) >= 2:
                    parts.append(lines[i])
                    i += 1
                bullets.append(join(parts))
            out.append(("bullets", bullets))
            continue
        parts = [line]
        i += 1
        pre = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("- "):
            if indent_of(lines[i]) > 0 and parts[-1].rstrip().endswith(":"):
                while i < len(lines) and lines[i].strip() and indent_of(lines[i]) > 0:
                    pre.append(lines[i])
                    i += 1
                break
            parts.append(lines[i])
            i += 1
        out.append(("para", join(parts)))
        if pre:
            out.append(("pre", pre))
    return out


def sentences(text):
    return [s for s in re.split(r"(?<=[.?!:;\"')])\s{2,}", text) if s]


def render(blocks_, out):
    for kind, body in blocks_:
        if kind == "heading":
            out.append(".SS " + escape(body))
        elif kind == "para":
            out.append(".PP")
            out.extend(l for s in sentences(body) for l in text_lines(inline(s)))
        elif kind == "bullets":
            for bullet in body:
                out.append(".IP \\(bu 2")
                out.extend(l for s in sentences(bullet) for l in text_lines(inline(s)))
            out.append(".PP")
        elif kind == "pre":
            base = min(indent_of(l) for l in body)
            # Indented by spaces, which no-fill mode keeps, so that the
            # block sits under its paragraph in a list item too.
            out.append(".sp")
            out.append(".nf")
            out.extend("    " + escape(l[base:]) for l in body)
            out.append(".fi")


def split_returns(blocks_):
    """Moves the sentences that say what a function returns ("Returns
    NQ_OK or NQ_EINVAL.") out of plain paragraphs."""
    kept, returns = [], []
    for kind, body in blocks_:
        if kind != "para":
            kept.append((kind, body))
            continue
        rest = []
        for s in sentences(body):
            (returns if re.match(r"Returns\b", s) else rest).append(s)
        if rest:
            kept.append((kind, "  ".join(rest)))
    return kept, returns


def summary(func):
    """The NAME line's description: the comment's first sentence that is
    more than a "Since 1.3." note, cut at its first colon or parenthesis
    and written in lower case."""
    text = [b for k, b in blocks(func.item.comment) if k == "para"][0]
    for s in sentences(text):
        s = re.sub(r"^Since [0-9.]+(, \w+)?[.:]?\s*", "", s)
        s = re.sub(r"^(Client|Server|MQTT): ", "", s)
        s = re.split(r"\s*[(:;]|,? e\.g\.", s)[0].rstrip(".,")
        if len(s.split()) >= 2:
            break
    # "Opens a ..." becomes "opens a ...", "TLS ..." stays.
    if not re.match(r"[A-Z][A-Z0-9]", s):
        s = s[0].lower() + s[1:]
    return s


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------


def th(name, section, date, version):
    # Identifiers are long and full of underscores: no hyphenation, and
    # ragged right rather than stretched spaces.
    return f'.TH {name.upper()} {section} {date} "libnq {version}" "libnq Manual"\n.nh\n.ad l'


def prototype_lines(func):
    """The prototype, with the function in bold and parameter names in
    italics, wrapped under its opening parenthesis."""
    head = f"{func.ret}{'' if func.ret.endswith('*') else ' '}"
    params = []
    for p in func.params:
        m = re.fullmatch(r"(.*?[\s*])(\w+)", p)
        if p == "void" or not m:
            params.append((escape(p), len(p)))
        else:
            params.append((escape(m.group(1)) + "\\fI" + m.group(2) + "\\fP", len(p)))
    first = escape(head) + "\\fB" + func.name + "\\fP("
    width = len(head) + len(func.name) + 1
    lines, current, used = [], first, width
    for n, (text, length) in enumerate(params):
        tail = ");" if n == len(params) - 1 else ","
        piece = text + tail
        if used + length + len(tail) > 76 and current.strip() != first.strip():
            lines.append(current.rstrip())
            current, used = " " * width, width
        current += piece + " "
        used += length + len(tail) + 1
    lines.append(current.rstrip())
    return lines


def see_also(names, own):
    refs = sorted(n for n in names if n in FUNCTION_NAMES and n != own)
    return ["libnq"] + refs


def mentioned(lines):
    return dict.fromkeys(re.findall(r"\bnq_\w+\b", "\n".join(lines)))


def describe_enum(t, out):
    if t.item.comment:
        render(blocks(t.item.comment), out)
    out.append(".PP")
    out.append(f"The values of \\fB{t.name}\\fR:")
    for name, value, comment in enum_members(t.item):
        out.append(".TP")
        out.append(f"\\fB{name}\\fR ({escape(value)})")
        text = []
        render(blocks(comment), text)
        # The item's first paragraph follows its tag; later ones are
        # indented paragraphs of the item.
        if text[:1] == [".PP"]:
            text.pop(0)
        out.extend(".IP" if l == ".PP" else l for l in text)
    out.append(".PP")


def function_page(func, types, date, version):
    shown, described = reach(func, types)
    out = [th(func.name, 3, date, version), ".SH NAME"]
    out += text_lines(f"{func.name} \\- {escape(summary(func))}")
    out += [".SH SYNOPSIS", ".nf", ".B #include <nq/nq.h>", ".PP"]
    for item in shown:
        out.extend(line_out(escape(l)) for l in strip_comment_lines(item.code))
        out.append("")
    out.extend(prototype_lines(func))
    out.append(".fi")

    description, returns = split_returns(blocks(func.item.comment))
    out.append(".SH DESCRIPTION")
    render(description, out)
    told = set()
    for t in described:
        if t.kind == "enum":
            describe_enum(t, out)
        elif t.item.comment and t.item.index not in told:
            render(blocks(t.item.comment), out)
        told.add(t.item.index)
    if returns:
        out.append(".SH RETURN VALUE")
        out.extend(l for s in returns for l in text_lines(inline(s)))
    out.append(".SH HISTORY")
    out.append(f"\\fB{func.name}\\fR first appeared in libnq {func.node[3:]} (symbol version {func.node}).")
    refs = mentioned(func.item.comment)
    for t in described:
        refs.update(mentioned(t.item.comment))
    for item in shown:
        refs.update(mentioned(item.code))
    out.append(".SH SEE ALSO")
    out.append(",\n".join(f".BR {n} (3)" for n in see_also(refs, func.name)))
    return "\n".join(tidy(out)) + "\n"


def strip_comment_lines(code):
    """Code lines as shown in a synopsis: comments that take whole lines
    go (the description has them); comments beside code stay."""
    text = "\n".join(code)
    text = re.sub(r"^\s*/\*.*?\*/\s*\n", "", text, flags=re.S | re.M)
    return text.split("\n")


def overview_page(file_comment, items, funcs, types, date, version):
    out = [th("libnq", 3, date, version), ".SH NAME", "libnq \\- network queues for C and every language that loads C"]
    out += [
        ".SH SYNOPSIS",
        ".nf",
        ".B #include <nq/nq.h>",
        ".PP",
        "cc ... $(pkg\\-config \\-\\-cflags \\-\\-libs nq)",
        "find_package(nq) and nq::nq in CMake",
        ".fi",
        ".SH DESCRIPTION",
    ]
    render(blocks(file_comment[1:] if file_comment[0].startswith("nq.h:") else file_comment), out)

    out.append(".SH FUNCTIONS")
    section = None
    for f in funcs:
        if f.item.section != section:
            section = f.item.section
            out.append(".SS " + escape(section))
        out.append(".TP")
        out.append(f".BR {f.name} (3)")
        out.extend(text_lines(escape(summary(f))))

    errors = [i for i in items if re.search(r"#define\s+NQ_E[A-Z]+\s", i.code_text())]
    out.append(".SH ERRORS")
    out.append("Every function that can fail returns one of these codes.")
    for item in errors:
        since = re.match(r"Since ([0-9.]+):$", " ".join(item.comment))
        for line in item.code:
            m = re.match(r"#define\s+(NQ_\w+)\s+\(?(-?\d+)\)?\s*/\*\s*(.*?)\s*\*/", line)
            if not m:
                continue
            out.append(".TP")
            out.append(f"\\fB{m.group(1)}\\fR ({escape(m.group(2))})")
            text = m.group(3) + (f" (since {since.group(1)})" if since else "")
            out.extend(text_lines(inline(text)))
    out.append(".PP")
    out.append(".BR nq_strerror (3)")
    out.append("turns a code into a sentence.")

    out.append(".SH OPTIONS")
    describe_enum(types["nq_option"], out)
    out.append(".SH COUNTERS")
    describe_enum(types["nq_stat_id"], out)

    # Everything else the header declares, each with its comment.
    out.append(".SH TYPES AND CONSTANTS")
    taken = {types["nq_option"].item.index, types["nq_stat_id"].item.index}
    taken.update(i.index for i in errors)
    taken.update(f.item.index for f in funcs)
    for item in items:
        if item.index in taken:
            continue
        out.append(".PP")
        enums = [t for t in types.values() if t.item is item and t.kind == "enum"]
        if enums:
            describe_enum(enums[0], out)
            continue
        out.append(".RS 4")
        out.append(".nf")
        out.extend(line_out(escape(l)) for l in strip_comment_lines(item.code))
        out.append(".fi")
        out.append(".RE")
        if item.comment:
            render(blocks(item.comment), out)
    out.append(".SH SEE ALSO")
    out.append(".BR nq (1),")
    out.append(".BR pkg\\-config (1)")
    return "\n".join(tidy(out)) + "\n"


PARAGRAPH = re.compile(r"\.(PP|IP)$")
STARTS = re.compile(r"\.(SH|SS|TP|PP|IP)\b")


def tidy(lines):
    """Drops paragraph macros that start nothing: right after a heading,
    before another paragraph or heading, or at the end."""
    out = []
    for line in lines:
        if STARTS.match(line) and out and PARAGRAPH.match(out[-1]):
            out.pop()
        if PARAGRAPH.match(line) and out and re.match(r"\.(SH|SS)\b", out[-1]):
            continue
        out.append(line)
    while out and PARAGRAPH.match(out[-1]):
        out.pop()
    return out


def page_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else None
    return (when or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d")


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    header, map_path, out_dir = argv[1:]
    file_comment, items = parse_header(header)
    funcs = functions_of(items)
    types = types_of(items)
    nodes = read_map(map_path)
    FUNCTION_NAMES.update(f.name for f in funcs)

    problems = []
    for f in funcs:
        if not f.item.comment:
            problems.append(f"{f.name} has no comment above it")
        f.node = nodes.get(f.name)
        if f.node is None:
            problems.append(f"{f.name} is not in {map_path}")
    for name in nodes:
        if name not in FUNCTION_NAMES:
            problems.append(f"{name} is in {map_path} but not declared NQ_API in {header}")
    if not funcs:
        problems.append(f"no NQ_API function in {header}")
    if problems:
        for p in problems:
            print(f"gen-man.py: {p}", file=sys.stderr)
        return 1

    version = ".".join(
        re.search(rf"#define NQ_VERSION_{part} (\d+)", "\n".join(i.code_text() for i in items)).group(1)
        for part in ("MAJOR", "MINOR", "PATCH")
    )
    date = page_date()
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith(".3"):
            os.remove(os.path.join(out_dir, old))
    pages = {"libnq": overview_page(file_comment, items, funcs, types, date, version)}
    for f in funcs:
        pages[f.name] = function_page(f, types, date, version)
    for name, text in pages.items():
        with open(os.path.join(out_dir, name + ".3"), "w", encoding="utf-8") as page:
            page.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
