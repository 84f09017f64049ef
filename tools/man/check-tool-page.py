#!/usr/bin/env python3
"""Checks that the nq tool's manual page and its usage text agree.

    check-tool-page.py NQ_BINARY PAGE

PAGE is nq.1 (as CMake made it from tools/nq/nq.1.in), NQ_BINARY the tool,
whose `nq --help` prints the usage text.  They agree when both name the same
commands and the same options, and every default the usage text states
("default 51966") appears in the page.  Exits 1 and says what differs
otherwise.  Python 3 standard library only.
"""

import re
import subprocess
import sys


def page_text(path):
    """The page's words without troff: requests, comments and escapes go."""
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith('.\\"'):
                continue
            line = re.sub(r"^\.[A-Za-z]+\s?", "", line.rstrip("\n"))
            line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")
            line = re.sub(r"\\f[BIRP]", "", line)
            line = re.sub(r"\\\(\w\w", " ", line)
            words.append(line)
    return "\n".join(words)


def commands(text):
    return set(re.findall(r"^\s*(?:usage: )?nq (\w+)", text, flags=re.M))


def options(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def defaults(text):
    return set(re.findall(r"default (-?\d[\d.]*\d|\d)", text))


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    usage = subprocess.run([argv[1], "--help"], check=True, capture_output=True, text=True).stdout
    # The usage text names "nq help"; --help, which printed it, is the same.
    usage += "\n--help\n"
    page = page_text(argv[2])
    synopsis = page.split("\nSYNOPSIS\n", 1)[-1].split("\nDESCRIPTION\n", 1)[0]

    problems = []
    for what, in_usage, in_page in (
        ("command", commands(usage), commands(synopsis)),
        ("option", options(usage), options(page)),
    ):
        for name in sorted(in_usage - in_page):
            problems.append(f"the usage text has the {what} {name}, the page does not")
        for name in sorted(in_page - in_usage):
            problems.append(f"the page has the {what} {name}, the usage text does not")
    for value in sorted(defaults(usage)):
        if not re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", page):
            problems.append(f"the usage text gives the default {value}, the page does not")
    for p in problems:
        print(f"check-tool-page.py: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{argv[2]} and `{argv[1]} --help` agree: commands {sorted(commands(usage))}, "
          f"{len(options(usage))} options")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
