#!/usr/bin/env python3
"""The thread-safety check alone, quickly: clang++ -fsyntax-only with the analysis' flags as errors
over the project's translation units, taking each one's flags from a configured build's
compile_commands.json (default build/, the gcc build of scripts/build.sh). No code generation, no
link, no sanitizers: minutes on 2 cores, where the full clang ASan build (scripts/build.sh --asan,
which runs the same analysis in CI) takes far longer. Prints each file that fails with clang's
messages; exits 1 if one does.
Usage: scripts/check-thread-safety.py [--build DIR] [--jobs N] [files.cc...]  (default: all)"""
import argparse
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

# Keep in step with REGEN_THREAD_SAFETY_FLAGS in the root CMakeLists.txt.
FLAGS = ['-Wthread-safety', '-Wthread-safety-beta', '-Werror']
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clang_command(entry):
    """The entry's compile command, run by clang++ as a syntax check with the analysis on."""
    args = entry['arguments'] if 'arguments' in entry else shlex.split(entry['command'])
    while args and os.path.basename(args[0]) in ('ccache', 'sccache'):
        args = args[1:]
    out, skip = ['clang++'], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a in ('-o', '-MF', '-MT', '-MQ'):
            skip = True
        elif a not in ('-c', '-MD', '-MMD') and not a.startswith('-fsanitize'):
            out.append(a)
    return out + ['-fsyntax-only'] + FLAGS


def check(entry):
    r = subprocess.run(clang_command(entry), cwd=entry['directory'], capture_output=True, text=True)
    return entry['file'], r.returncode, r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--jobs', type=int, default=os.cpu_count() or 1)
    ap.add_argument('files', nargs='*')
    opts = ap.parse_args()
    db_path = os.path.join(opts.build, 'compile_commands.json')
    if not os.path.exists(db_path):
        sys.exit(f'{db_path} is missing: configure the build first (scripts/build.sh)')
    # The generated protobuf/gRPC headers the sources include (cheap when already there).
    subprocess.run(['cmake', '--build', opts.build, '--target', 'regen_proto'], check=True,
                   stdout=subprocess.DEVNULL)
    with open(db_path) as f:
        entries = [e for e in json.load(f)
                   if e['file'].startswith(ROOT + os.sep)
                   and not os.path.relpath(e['file'], ROOT).startswith('build')]
    if opts.files:
        wanted = {os.path.abspath(p) for p in opts.files}
        entries = [e for e in entries if e['file'] in wanted]
        missing = wanted - {e['file'] for e in entries}
        if missing:
            sys.exit('not in ' + db_path + ': ' + ' '.join(sorted(missing)))
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        for path, rc, err in pool.map(check, entries):
            if rc != 0:
                failed += 1
                print(f'== {os.path.relpath(path, ROOT)}\n{err}', flush=True)
    print(f'check-thread-safety: {len(entries) - failed} of {len(entries)} files clean')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
