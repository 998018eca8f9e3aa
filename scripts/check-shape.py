#!/usr/bin/env python3
"""Checks the code's shape (STYLE.md rule 11): no production C++ file over 600 lines and no
function over 80 lines. Production = every .cc/.h outside tests/ and build*/. Functions are found
by a brace-matching scan (comments and strings stripped); a lambda counts toward the function
that holds it. Prints each offender; exits 1 if there is one.
Usage: scripts/check-shape.py [--max-file N] [--max-function N] [paths...]"""
import os
import re
import sys

MAX_FILE, MAX_FUNC = 600, 80
CONTROL = re.compile(r'\b(if|for|while|switch|catch|do|else|return|try)\s*$')


def strip(text):
    """Replaces comments and string/char literals with spaces, keeping newlines."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + re.sub(r'[^\n]', ' ', text[i + 1:j]) + c); i = j + 1
        else:
            out.append(c); i += 1
    return ''.join(out)


def functions(text):
    """Yields (name, first_line, line_count) of every function body in `text`."""
    s = strip(text)
    stack = []  # (kind, start_line, name)
    last_stmt_end = 0
    for i, c in enumerate(s):
        if c == '{':
            head = s[last_stmt_end:i]
            kind, name = 'block', ''
            in_function = any(k == 'func' for k, _, _ in stack)
            h = head.strip()
            m = re.search(r'([~\w:<>]+)\s*\([^;]*\)\s*(const|override|final|noexcept|mutable|'
                          r'->\s*[\w:<>,\s*&]+|\s|[A-Z_]+\([^)]*\))*$', h)
            if (not in_function and m and not CONTROL.search(h[:m.start(1)] + m.group(1))
                    and not h.endswith(']') and '=' not in h.split('(')[0][-3:]):
                kind, name = 'func', m.group(1)
            start = s.count('\n', 0, i - len(head) + (len(head) - len(head.lstrip()))) + 1
            stack.append((kind, start, name))
            last_stmt_end = i + 1
        elif c == '}':
            if stack:
                kind, start, name = stack.pop()
                if kind == 'func':
                    yield name, start, s.count('\n', 0, i) + 1 - start + 1
            last_stmt_end = i + 1
        elif c == ';':
            last_stmt_end = i + 1


def main(argv):
    global MAX_FILE, MAX_FUNC
    paths = []
    it = iter(argv)
    for a in it:
        if a == '--max-file':
            MAX_FILE = int(next(it))
        elif a == '--max-function':
            MAX_FUNC = int(next(it))
        elif os.path.isdir(a):
            paths += [os.path.join(d, f) for d, _, fs in os.walk(a) for f in fs
                      if f.endswith(('.cc', '.h'))]
        else:
            paths.append(a)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not paths:
        for d, dirs, files in os.walk(root):
            rel = os.path.relpath(d, root)
            dirs[:] = [x for x in dirs if not (x.startswith('build') or x.startswith('.')
                                               or (rel == '.' and x == 'tests'))]
            paths += [os.path.join(d, f) for f in files if f.endswith(('.cc', '.h'))]
    bad = 0
    for p in sorted(paths):
        text = open(p, encoding='utf-8', errors='replace').read()
        rel = os.path.relpath(p, root)
        lines = text.count('\n')
        if lines > MAX_FILE:
            print(f'{rel}: {lines} lines (max {MAX_FILE})'); bad += 1
        for name, start, count in functions(text):
            if count > MAX_FUNC:
                print(f'{rel}:{start}: function {name} is {count} lines (max {MAX_FUNC})')
                bad += 1
    if bad:
        print(f'check-shape: {bad} over the limits')
        return 1
    print('check-shape: every file <= %d lines, every function <= %d lines' % (MAX_FILE, MAX_FUNC))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
