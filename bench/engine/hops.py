#!/usr/bin/env python3
"""Where a sequential decoupled one-activity workflow's time goes, hop by hop.

Reads the files a traced run wrote (KILN_HOP_TRACE=<prefix>: common/hop_trace.h) and prints,
for each step of the workflow's path from the caller's start to its result, the median and
quartile times between consecutive points. Run:

  KILN_HOP_TRACE=/tmp/hop kiln-engine-bench --topology decoupled --only a --duration 0.2 \
      --sequential 500
  bench/engine/hops.py /tmp/hop

Only the sequential part is read (one workflow at a time, so the points of one workflow lie
between its caller's c.start and c.done); a workflow whose points do not all appear in order
is left out and counted. Two paths are tried, the one more workflows follow is printed: every
task after its commit's sync (`--orchestrator-arg=--workflow-tasks-before-sync=false`), or
workflow tasks sent while the commit syncs (the default), where the start's and the activity's
fsyncs run beside the workflow worker's round trip and the wait for them shows as the next
completion's "o.exec -> o.commit.w". A second table gives, from the start's handler, when each
of the path's commits (four, or two when held for their workflow task's answer) was queued,
written and synced, and when the completion that led to it was read and began to run: where a
workflow task's round trip overlaps its commit's fsync, it shows which of the two ended last.
"""
import glob
import statistics
import sys

# The path of scenario (a): (process, point), in the order a workflow passes them.
ROUND_TRIP = [('O', 'o.commit.w'), ('O', 'o.commit.synced')]
WORKFLOW_TASK = [('WF', 'w.read'), ('WF', 'w.wft'), ('WF', 'w.write'), ('O', 'o.read'),
                 ('O', 'o.exec')]
ACTIVITY = [('ACT', 'w.read'), ('ACT', 'w.act'), ('ACT', 'w.write'), ('O', 'o.read'),
            ('O', 'o.exec')]
# The caller's unary call: c.call/c.ret around it in the SDK, o.start.h where the orchestrator's
# handler begins, o.fin/o.fin2 around its Finish (gRPC sends the answer inline).
CLOSE = ROUND_TRIP + [('O', 'o.closed'), ('O', 'o.fin'), ('O', 'o.fin2'), ('C', 'c.ret'),
                      ('C', 'c.done')]
START = [('C', 'c.start'), ('C', 'c.call'), ('O', 'o.start.h'), ('O', 'o.start.rpc')]
# Every task after its commit's sync.
AFTER_SYNC = (START + ROUND_TRIP + [('O', 'o.write')] + WORKFLOW_TASK + ROUND_TRIP +
              [('O', 'o.write')] + ACTIVITY + ROUND_TRIP + [('O', 'o.write')] + WORKFLOW_TASK +
              CLOSE)
# Workflow tasks out while their commit syncs (the activity still waits for its sync).
WHILE_SYNCING = (START + [('O', 'o.write')] + WORKFLOW_TASK + ROUND_TRIP + [('O', 'o.write')] +
                 ACTIVITY + [('O', 'o.write')] + WORKFLOW_TASK + CLOSE)


def role(tags):
    if 'c.start' in tags:
        return 'C'
    if any(t.startswith('o.') for t in tags):
        return 'O'
    if 'w.wft' in tags:
        return 'WF'
    if 'w.act' in tags:
        return 'ACT'
    return '?'


def load(prefix):
    events = []
    for path in glob.glob(prefix + '.*'):
        with open(path) as f:
            lines = [line.split() for line in f if line.count(' ') == 2]
        r = role({tag for _, _, tag in lines})
        events += [(int(ns), r, tag) for ns, _, tag in lines]
    events.sort()
    workflows, current = [], None
    for event in events:
        if event[2] == 'c.start':
            current = [event]
            workflows.append(current)
        elif current is not None:
            current.append(event)
            if event[2] == 'c.done':
                current = None
    return workflows


def follow(workflows, path):
    """The times of each workflow that passes every point of `path` in order."""
    followed = []
    for w in workflows:
        times, i = [], 0
        for point in path:
            while i < len(w) and (w[i][1], w[i][2]) != point:
                i += 1
            if i == len(w):
                break
            times.append(w[i][0])
            i += 1
        if len(times) == len(path):
            followed.append(times)
    return followed


def main(prefix):
    workflows = load(prefix)
    # The paths above have one activity: a workflow of more would match them by skipping points.
    several = sum(1 for w in workflows
                  if sum(1 for _, r, t in w if (r, t) == ('ACT', 'w.act')) > 1)
    if several:
        sys.exit(f'{several} of {len(workflows)} workflows ran more than one activity: '
                 'hops.py reads scenario (a) only (--only a)')
    paths = [('every task after its sync', AFTER_SYNC),
             ('workflow tasks while their commit syncs', WHILE_SYNCING)]
    name, path, followed = max(((n, p, follow(workflows, p)) for n, p in paths),
                               key=lambda t: len(t[2]))
    if not followed:
        sys.exit('no workflow had every point: was the run traced, decoupled, scenario (a)?')
    # Held for the answer (the default, when commits are few): the same points, but the start
    # and the first task's answer commit in one write, the activity's and the last task's in
    # another.
    commits = statistics.median(sum(1 for _, r, t in w if (r, t) == ('O', 'o.commit.w'))
                                for w in workflows)
    if path is WHILE_SYNCING and commits == 2:
        name = 'commits held for their workflow task\'s answer'
    totals = [(t[-1] - t[0]) / 1000 for t in followed]
    print(f'{len(followed)} of {len(workflows)} workflows followed the path "{name}"; '
          f'caller start to result: median {statistics.median(totals):.0f} us\n')
    print('| from | to | median us | quartiles us |')
    print('| --- | --- | --- | --- |')
    for k in range(1, len(path)):
        d = sorted((t[k] - t[k - 1]) / 1000 for t in followed)
        a, b = path[k - 1], path[k]
        print(f'| {a[0]} {a[1]} | {b[0]} {b[1]} | {statistics.median(d):.0f} | '
              f'{d[len(d) // 4]:.0f}–{d[3 * len(d) // 4]:.0f} |')
    chain(workflows)


def chain(workflows):
    """When each of the path's four commits is queued, written and synced, and when the
    completions that follow them arrive, from the start's handler (o.start.rpc): which of an
    overlapped fsync and its workflow task's round trip ended last."""
    # Each commit: its name, and which completion (an index into o.read) led to it.
    four = [('start', None), ('first workflow task', 0), ('activity', 1),
            ('second workflow task', 2)]
    # Held for the answer: the completion that joined the held commit.
    two = [('start + first workflow task', 0), ('activity + second workflow task', 2)]
    rows = {}
    for w in workflows:
        o = {}
        for t, r, g in w:
            if r == 'O':
                o.setdefault(g, []).append(t)
        n = len(o.get('o.commit.w', []))
        steps = four if n == 4 else two
        if not o.get('o.start.rpc') or n not in (2, 4) or any(
                len(o.get(g, [])) != c for g, c in (('o.commit.q', n), ('o.commit.synced', n),
                                                    ('o.read', 3), ('o.exec', 3))):
            continue
        t0 = o['o.start.rpc'][0]
        for k, (step, completion) in enumerate(steps):
            points = [('queued', o['o.commit.q'][k]), ('written', o['o.commit.w'][k]),
                      ('synced', o['o.commit.synced'][k])]
            if completion is not None:
                points = [('read', o['o.read'][completion]),
                          ('run', o['o.exec'][completion])] + points
            for name, t in points:
                rows.setdefault((k, step, name), []).append((t - t0) / 1000)
    if not rows:
        return
    n = max(len(v) for v in rows.values())
    print(f'\nThe commits on the path, from the start\'s handler ({n} workflows; median us):\n')
    print('| transition | its completion read | run | batch queued | written | synced |')
    print('| --- | --- | --- | --- | --- | --- |')
    for k, step in sorted({(k, step) for k, step, _ in rows}):
        cells = [f'{statistics.median(rows[(k, step, p)]):.0f}' if (k, step, p) in rows else ''
                 for p in ('read', 'run', 'queued', 'written', 'synced')]
        print(f'| {step} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: hops.py <KILN_HOP_TRACE prefix>')
    main(sys.argv[1])
