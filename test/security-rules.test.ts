import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SecurityEvent, SecurityEventType } from '../contract/security.ts';
import { compileCondition, resolveCondition, type ConditionScope } from '../security/rules/condition-compile.ts';
import { ConditionSyntaxError, parseCondition } from '../security/rules/condition-parse.ts';
import type { KillEnforcement } from '../security/rules/enforcement.ts';
import { defaultRulesSource } from '../security/rules/default-rules.ts';
import { RuleEngine } from '../security/rules/engine.ts';
import { EVENT_TYPES, eventTypesOf } from '../security/rules/event-types.ts';
import { lookupField } from '../security/rules/fields.ts';
import { loadRuleFiles, loadRuleSources, type LoadResult } from '../security/rules/load.ts';
import { compileOutput } from '../security/rules/output.ts';

// Synthetic events: a pod's exec unless overridden.
const POD = { namespace: 'shop', name: 'web-1', labels: { app: 'web', 'app.kubernetes.io/name': 'shop-web' }, containerId: 'c0ffee', netnsInode: 4026532999 };

type EventOverrides = Partial<Omit<SecurityEvent, 'proc'>> & { proc?: Partial<SecurityEvent['proc']> };
function exec(over: EventOverrides = {}): SecurityEvent {
  const { proc, ...rest } = over;
  return {
    time: '2026-12-07T20:00:00.000Z',
    type: 'execve',
    host: false,
    pod: POD,
    ...rest,
    proc: { pid: 4242, ppid: 4200, uid: 1000, name: 'bash', exepath: '/usr/bin/bash', args: ['bash', '-c', 'id'], pname: 'containerd-shim', ...proc },
  };
}
function hostExec(over: Partial<SecurityEvent['proc']> = {}): SecurityEvent {
  const e = exec({ host: true, proc: over });
  delete e.pod;
  return e;
}
function open(path: string, flagNames: string[], flags = 0): SecurityEvent {
  return exec({ type: 'openat', proc: { name: 'cat', exepath: '/usr/bin/cat', args: ['cat', path] }, file: { path, flags, flagNames } });
}
function connect(ip: string, port: number): SecurityEvent {
  return exec({ type: 'connect', proc: { name: 'curl', exepath: '/usr/bin/curl', args: ['curl', ip] }, connect: { ip, port, family: 4, protocol: 'TCP' } });
}

const EMPTY: ConditionScope = { macros: new Map(), lists: new Map() };
function cond(text: string, scope: ConditionScope = EMPTY): (e: SecurityEvent) => boolean {
  return compileCondition(resolveCondition(parseCondition(text), scope));
}
const holds = (text: string, e: SecurityEvent, scope?: ConditionScope) => cond(text, scope)(e);

describe('conditions: operators', () => {
  const e = exec();
  it('= and == and != compare whole values', () => {
    expect(holds('proc.name = bash', e)).toBe(true);
    expect(holds('proc.name == bash', e)).toBe(true);
    expect(holds('proc.name=bas', e)).toBe(false);
    expect(holds('proc.name != sh', e)).toBe(true);
    expect(holds('proc.name != bash', e)).toBe(false);
  });
  it('<, <=, >, >= compare numbers', () => {
    expect(holds('user.uid < 1001', e)).toBe(true);
    expect(holds('user.uid < 1000', e)).toBe(false);
    expect(holds('user.uid <= 1000', e)).toBe(true);
    expect(holds('user.uid > 999', e)).toBe(true);
    expect(holds('user.uid > 1000', e)).toBe(false);
    expect(holds('user.uid >= 1000', e)).toBe(true);
    expect(holds('user.uid>=1001', e)).toBe(false);
  });
  it('contains, icontains, startswith, endswith', () => {
    expect(holds('proc.cmdline contains "-c i"', e)).toBe(true);
    expect(holds('proc.cmdline contains ID', e)).toBe(false);
    expect(holds('proc.cmdline icontains ID', e)).toBe(true);
    expect(holds('proc.exepath startswith /usr/', e)).toBe(true);
    expect(holds('proc.exepath startswith /bin/', e)).toBe(false);
    expect(holds('proc.exepath endswith /bash', e)).toBe(true);
    expect(holds('proc.exepath endswith /sh', e)).toBe(false);
  });
  it('in takes a list of bare, quoted and numeric values', () => {
    expect(holds('proc.name in (sh, bash, "zsh")', e)).toBe(true);
    expect(holds("proc.name in ('sh', zsh)", e)).toBe(false);
    expect(holds('user.uid in (0, 1000)', e)).toBe(true);
    expect(holds('user.uid in (0)', e)).toBe(false);
    expect(holds('proc.name in ()', e)).toBe(false);
  });
  it('pmatch matches a path equal to or below a prefix', () => {
    expect(holds('fd.name pmatch (/etc, /usr/bin)', open('/etc/passwd', ['O_RDONLY']))).toBe(true);
    expect(holds('fd.name pmatch (/etc/)', open('/etc', ['O_RDONLY']))).toBe(true);
    expect(holds('fd.name pmatch (/etc)', open('/etcetera/x', ['O_RDONLY']))).toBe(false);
    expect(holds('fd.name pmatch (/)', open('/x', ['O_RDONLY']))).toBe(true);
  });
  it('glob matches like fnmatch: * ? and classes', () => {
    expect(holds('proc.exepath glob "/usr/*/ba?h"', e)).toBe(true);
    expect(holds('proc.exepath glob "/usr/bin/[bz]ash"', e)).toBe(true);
    expect(holds('proc.exepath glob "/usr/bin/[!b]ash"', e)).toBe(false);
    expect(holds('proc.exepath glob "/usr/bin/b.sh"', e)).toBe(false);
  });
  it('exists holds when the event has the field', () => {
    expect(holds('k8s.pod.name exists', e)).toBe(true);
    expect(holds('k8s.pod.name exists', hostExec())).toBe(false);
    expect(holds('fd.name exists', e)).toBe(false);
  });
  it('an absent field fails every comparison, != included; not of it holds', () => {
    expect(holds('fd.name = /etc/shadow', e)).toBe(false);
    expect(holds('fd.name != /etc/shadow', e)).toBe(false);
    expect(holds('fd.sport in (80)', e)).toBe(false);
    expect(holds('not fd.name = /etc/shadow', e)).toBe(true);
    expect(holds('k8s.ns.name != shop', hostExec())).toBe(false);
  });
  it('quoted strings keep spaces and escapes', () => {
    const q = exec({ proc: { args: ['bash', '-c', 'echo "hi there"'] } });
    expect(holds('proc.cmdline = \'bash -c echo "hi there"\'', q)).toBe(true);
    expect(holds('proc.cmdline contains "\\"hi"', q)).toBe(true);
  });
});

describe('conditions: precedence and grouping', () => {
  const e = exec();
  it('not binds tighter than and, and tighter than or', () => {
    // false and false or true = (false and false) or true
    expect(holds('proc.name = sh and proc.name = zsh or proc.name = bash', e)).toBe(true);
    // true or true and false = true or (true and false)
    expect(holds('proc.name = bash or proc.name = bash and proc.name = sh', e)).toBe(true);
    // not true and false = (not true) and false; not (true and false) would hold
    expect(holds('not proc.name = bash and proc.name = sh', e)).toBe(false);
    expect(holds('not (proc.name = bash and proc.name = sh)', e)).toBe(true);
    // not false or true: (not false) or ...
    expect(holds('not proc.name = sh or proc.name = zsh', e)).toBe(true);
    expect(holds('not (proc.name = sh or proc.name = bash)', e)).toBe(false);
    expect(holds('not not proc.name = bash', e)).toBe(true);
  });
  it('parentheses group, without spaces too', () => {
    expect(holds('(proc.name=sh or proc.name=bash) and(user.uid=1000)', e)).toBe(true);
    expect(holds('proc.name=sh or (proc.name=bash and user.uid=0)', e)).toBe(false);
    expect(holds('not(proc.name=sh)', e)).toBe(true);
  });
  it('a keyword inside a word is not a keyword', () => {
    const andy = exec({ proc: { name: 'andor' } });
    expect(holds('proc.name = andor', andy)).toBe(true);
    expect(holds('proc.name in (notme, andor)', andy)).toBe(true);
  });
});

describe('conditions: syntax errors', () => {
  const bad: [string, RegExp][] = [
    ['', /empty condition/],
    ['proc.name =', /expected a value after =/],
    ['proc.name bash', /expected an operator after proc.name/],
    ['(proc.name = bash', /missing '\)'/],
    ['proc.name = bash)', /unexpected '\)'/],
    ['proc.name in (a, b', /missing '\)' after the list/],
    ['proc.name = "bash', /unterminated string/],
    ['proc.name = bash and', /unexpected end of condition/],
    ['and proc.name = bash', /unexpected 'and'/],
    ['proc.name intersects (a)', /operator intersects is not supported/],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      expect(() => parseCondition(text)).toThrow(ConditionSyntaxError);
      expect(() => parseCondition(text)).toThrow(message);
    });
  }
  it('rejects unknown fields and values of the wrong type', () => {
    expect(() => cond('proc.nmae = bash')).toThrow('unknown field proc.nmae');
    expect(() => cond('user.uid = root')).toThrow("user.uid is a number, not 'root'");
    expect(() => cond('user.uid contains 1')).toThrow('operator contains needs a string field');
    expect(() => cond('proc.name > a')).toThrow('operator > needs a numeric field');
    expect(() => cond('evt.is_open_write = yes')).toThrow('true or false');
    expect(() => cond('shell_procs')).toThrow('unknown macro shell_procs');
    expect(() => cond('proc.name in shells')).toThrow('unknown list shells');
  });
});

describe('conditions: macros and lists', () => {
  const scope: ConditionScope = {
    macros: new Map([
      ['spawned_process', parseCondition('evt.type = execve and evt.dir = <')],
      ['shell_procs', parseCondition('spawned_process and proc.name in (shell_binaries)')],
      ['loop_a', parseCondition('loop_b')],
      ['loop_b', parseCondition('loop_a')],
    ]),
    lists: new Map([
      ['shell_binaries', ['sh', 'bash_like']],
      ['bash_like', ['bash', 'zsh']],
      ['ports', ['80', '443']],
    ]),
  };
  it('macros expand, also inside macros', () => {
    expect(holds('shell_procs', exec(), scope)).toBe(true);
    expect(holds('shell_procs', exec({ proc: { name: 'ls' } }), scope)).toBe(false);
    expect(holds('not shell_procs', exec({ proc: { name: 'ls' } }), scope)).toBe(true);
  });
  it('lists expand inside parentheses, also lists inside lists, beside literal items', () => {
    expect(holds('proc.name in (shell_binaries)', exec({ proc: { name: 'zsh' } }), scope)).toBe(true);
    expect(holds('proc.name in (ls, shell_binaries)', exec({ proc: { name: 'ls' } }), scope)).toBe(true);
    expect(holds('proc.name in (shell_binaries)', exec({ proc: { name: 'shell_binaries' } }), scope)).toBe(false);
    expect(holds('proc.name in ("shell_binaries")', exec({ proc: { name: 'shell_binaries' } }), scope)).toBe(true);
    expect(holds('fd.sport in ports', connect('1.1.1.1', 443), scope)).toBe(true);
    expect(holds('not fd.sport in (ports)', connect('1.1.1.1', 22), scope)).toBe(true);
  });
  it('a macro that refers to itself is an error, not a hang', () => {
    expect(() => cond('loop_a', scope)).toThrow('refers to itself');
  });
  it('an error inside a macro names the macro', () => {
    const s: ConditionScope = { macros: new Map([['m', parseCondition('proc.nmae = x')]]), lists: new Map() };
    expect(() => cond('m', s)).toThrow('in macro m: unknown field proc.nmae');
  });
});

describe('fields', () => {
  const read = (name: string, e: SecurityEvent) => lookupField(name)!.get(e);
  const e = exec({ proc: { previousUid: 1000, uid: 0 } });
  it('read every field of an exec in a pod', () => {
    expect(read('evt.type', e)).toBe('execve');
    expect(read('evt.time', e)).toBe('2026-12-07T20:00:00.000Z');
    expect(read('evt.dir', e)).toBe('<');
    expect(read('evt.previous_uid', e)).toBe(1000);
    expect(read('proc.name', e)).toBe('bash');
    expect(read('proc.exepath', e)).toBe('/usr/bin/bash');
    expect(read('proc.pname', e)).toBe('containerd-shim');
    expect(read('proc.args', e)).toBe('-c id');
    expect(read('proc.cmdline', e)).toBe('bash -c id');
    expect(read('proc.pid', e)).toBe(4242);
    expect(read('proc.ppid', e)).toBe(4200);
    expect(read('user.uid', e)).toBe(0);
    expect(read('container.id', e)).toBe('c0ffee');
    expect(read('k8s.ns.name', e)).toBe('shop');
    expect(read('k8s.pod.name', e)).toBe('web-1');
    expect(read('k8s.pod.label.app', e)).toBe('web');
    expect(read('k8s.pod.label[app]', e)).toBe('web');
    expect(read('k8s.pod.label.app.kubernetes.io/name', e)).toBe('shop-web');
    expect(read('k8s.pod.label[app.kubernetes.io/name]', e)).toBe('shop-web');
    expect(read('k8s.pod.label.missing', e)).toBeUndefined();
    for (const f of ['fd.name', 'fd.directory', 'fd.filename', 'fd.sip', 'fd.sport', 'fd.l4proto', 'evt.is_open_write', 'evt.is_open_read', 'evt.arg.flags']) {
      expect(read(f, e), f).toBeUndefined();
    }
    expect(read('evt.previous_uid', exec())).toBeUndefined();
  });
  it('proc.cmdline of a process with no arguments is its name', () => {
    expect(read('proc.cmdline', exec({ proc: { args: ['bash'] } }))).toBe('bash');
    expect(read('proc.args', exec({ proc: { args: [] } }))).toBe('');
  });
  it('read a host process as container.id host, without pod fields', () => {
    const h = hostExec();
    expect(read('container.id', h)).toBe('host');
    expect(read('k8s.ns.name', h)).toBeUndefined();
    expect(read('k8s.pod.name', h)).toBeUndefined();
    expect(read('k8s.pod.label.app', h)).toBeUndefined();
    expect(holds('container.id = host', h)).toBe(true);
    expect(holds('container.id != host', exec())).toBe(true);
    expect(holds('container.id != host', exec({ pod: { ...POD, containerId: undefined } }))).toBe(true);
  });
  it('read file opens: name, directory, flags, read and write intent', () => {
    const o = open('/etc/shadow', ['O_RDONLY', 'O_CLOEXEC']);
    expect(read('fd.name', o)).toBe('/etc/shadow');
    expect(read('fd.directory', o)).toBe('/etc');
    expect(read('fd.filename', o)).toBe('shadow');
    expect(read('evt.arg.flags', o)).toBe('O_RDONLY|O_CLOEXEC');
    expect(read('evt.is_open_read', o)).toBe(true);
    expect(read('evt.is_open_write', o)).toBe(false);
    for (const w of ['O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_TRUNC']) expect(read('evt.is_open_write', open('/etc/x', [w])), w).toBe(true);
    expect(read('evt.is_open_read', open('/etc/x', ['O_WRONLY']))).toBe(false);
    // From the numeric flags when the names are missing.
    expect(read('evt.is_open_write', open('/etc/x', [], 0o1))).toBe(true);
    expect(read('evt.is_open_write', open('/etc/x', [], 0o100))).toBe(true);
    expect(read('evt.is_open_write', open('/etc/x', [], 0o1000))).toBe(true);
    expect(read('evt.is_open_write', open('/etc/x', [], 0o2000000))).toBe(false);
    expect(read('fd.directory', open('/x', []))).toBe('/');
  });
  it('read connects: server address, port and protocol', () => {
    const c = connect('10.0.0.9', 5432);
    expect(read('fd.sip', c)).toBe('10.0.0.9');
    expect(read('fd.sport', c)).toBe(5432);
    expect(read('fd.l4proto', c)).toBe('tcp');
    expect(read('fd.name', c)).toBeUndefined();
  });
  it('know no other field', () => {
    expect(lookupField('proc.nmae')).toBeUndefined();
    expect(lookupField('k8s.pod.label.')).toBeUndefined();
    expect(lookupField('k8s.pod.label[]')).toBeUndefined();
  });
});

describe('loading rule files', () => {
  const SHELL = `
- list: shell_binaries
  items: [sh, bash]
- macro: spawned_process
  condition: evt.type = execve and evt.dir = <
- macro: container
  condition: container.id != host
- rule: shell in a pod
  desc: a shell started in a pod
  condition: spawned_process and container and proc.name in (shell_binaries)
  output: shell in %k8s.ns.name/%k8s.pod.name (cmd=%proc.cmdline)
  priority: warning
  tags: [shell, mitre_execution]
`;
  const byName = (r: LoadResult, name: string) => r.rules.find((x) => x.name === name);

  it('loads rules, macros and lists, with defaults', () => {
    const r = loadRuleSources([{ file: 'a.yaml', text: SHELL }]);
    expect(r.errors).toEqual([]);
    const rule = byName(r, 'shell in a pod')!;
    expect(rule).toMatchObject({ desc: 'a shell started in a pod', priority: 'WARNING', tags: ['shell', 'mitre_execution'], action: 'alert', enabled: true, location: { file: 'a.yaml', line: 8 } });
    expect(rule.matches(exec())).toBe(true);
    expect(rule.matches(hostExec())).toBe(false);
    expect(rule.matches(exec({ proc: { name: 'zsh' } }))).toBe(false);
  });

  it('a later file overrides a list, a macro and a rule of the same name; append adds to them', () => {
    const later = `
- list: shell_binaries
  items: [zsh]
- list: shell_binaries
  items: [fish]
  append: true
- macro: container
  condition: k8s.ns.name = shop
- macro: container
  condition: and k8s.pod.name = web-1
  append: true
`;
    const r = loadRuleSources([{ file: 'a.yaml', text: SHELL }, { file: 'b.yaml', text: later }]);
    expect(r.errors).toEqual([]);
    const rule = byName(r, 'shell in a pod')!;
    expect(rule.matches(exec())).toBe(false);
    expect(rule.matches(exec({ proc: { name: 'zsh' } }))).toBe(true);
    expect(rule.matches(exec({ proc: { name: 'fish' } }))).toBe(true);
    expect(rule.matches(exec({ proc: { name: 'fish' }, pod: { ...POD, name: 'web-2' } }))).toBe(false);

    const replaced = `
- rule: shell in a pod
  condition: spawned_process and proc.name = dash
  output: dash
  priority: ERROR
- rule: shell in a pod
  condition: or proc.name = ash
  append: true
- rule: other
  condition: evt.type = connect
  output: x
  priority: INFO
  enabled: false
`;
    const r2 = loadRuleSources([{ file: 'a.yaml', text: SHELL }, { file: 'c.yaml', text: replaced }]);
    expect(r2.errors).toEqual([]);
    const rule2 = byName(r2, 'shell in a pod')!;
    expect(rule2).toMatchObject({ priority: 'ERROR', output: 'dash', condition: 'spawned_process and proc.name = dash or proc.name = ash' });
    expect(rule2.matches(exec({ proc: { name: 'dash' } }))).toBe(true);
    expect(rule2.matches(exec({ proc: { name: 'ash' } }))).toBe(true);
    expect(rule2.matches(exec())).toBe(false);
    expect(byName(r2, 'other')).toMatchObject({ enabled: false, priority: 'INFORMATIONAL' });
    // `rule` + `enabled` alone switches an earlier rule.
    const r3 = loadRuleSources([{ file: 'a.yaml', text: SHELL }, { file: 'd.yaml', text: '- rule: shell in a pod\n  enabled: false\n' }]);
    expect(r3.errors).toEqual([]);
    expect(byName(r3, 'shell in a pod')!.enabled).toBe(false);
  });

  it('a rule that does not load gets an error with its file and line, and the others load', () => {
    const text = `- required_engine_version: 10
- rule: good one
  condition: proc.name = bash
  output: ok
  priority: NOTICE
- rule: typo
  condition: evt.type = execve and proc.nmae = bash
  output: x
  priority: NOTICE
- rule: bad syntax
  condition: >
    evt.type = execve and
    (proc.name = bash
  output: x
  priority: NOTICE
- rule: bad priority
  condition: proc.name = bash
  output: x
  priority: URGENT
- rule: bad action
  condition: proc.name = bash
  output: x
  priority: NOTICE
  action: block
- rule: no macro
  condition: evt.type = execve and
    shell_procs
  output: x
  priority: NOTICE
- rule: no list
  condition: proc.name in nowhere
  output: x
  priority: NOTICE
- rule: bad output
  condition: proc.name = bash
  output: "%proc.nmae ran"
  priority: NOTICE
- rule: missing
  desc: no condition
- rule: unknown key
  conditon: proc.name = bash
  output: x
  priority: NOTICE
- rule: exceptions
  condition: proc.name = bash
  output: x
  priority: NOTICE
  exceptions: []
- macro: broken macro
  condition: proc.name = x
- macro: bad_macro
  condition: proc.pname = x and user.uid = root
- rule: uses bad macro
  condition: bad_macro
  output: x
  priority: NOTICE
- list: appended
  items: [a]
  append: true
- rule: good one
  output: changed
  append: true
- something: else
- rule: late good one
  condition: proc.name = sh
  output: ok
  priority: DEBUG
`;
    const r = loadRuleSources([{ file: 'rules/bad.yaml', text }]);
    expect(r.rules.map((x) => x.name)).toEqual(['good one', 'late good one']);
    expect(r.errors.map((e) => e.text)).toEqual([
      'rules/bad.yaml:7: rule "typo": condition: unknown field proc.nmae',
      "rules/bad.yaml:13: rule \"bad syntax\": condition: missing ')'",
      'rules/bad.yaml:19: rule "bad priority": priority URGENT is not one of EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL, DEBUG',
      'rules/bad.yaml:24: rule "bad action": action block is not one of alert, kill, deny-connect',
      'rules/bad.yaml:27: rule "no macro": condition: unknown macro shell_procs',
      'rules/bad.yaml:31: rule "no list": condition: unknown list nowhere',
      'rules/bad.yaml:36: rule "bad output": output: unknown field %proc.nmae',
      'rules/bad.yaml:38: rule "missing": missing condition, output, priority',
      'rules/bad.yaml:41: rule "unknown key": unknown key conditon',
      'rules/bad.yaml:48: rule "exceptions": unknown key exceptions (not supported)',
      'rules/bad.yaml:49: macro "broken macro": a macro name is letters, digits and _',
      'rules/bad.yaml:52: macro "bad_macro": condition: user.uid is a number, not \'root\'',
      'rules/bad.yaml:54: rule "uses bad macro": condition: in macro bad_macro: user.uid is a number, not \'root\'',
      'rules/bad.yaml:57: list "appended": append to a list that is not defined before',
      'rules/bad.yaml:61: rule "good one": output cannot be appended (only condition; redefine the rule to change it)',
      'rules/bad.yaml:63: unknown item (keys: something): expected rule, macro or list',
    ]);
    expect(r.errors[0]).toMatchObject({ file: 'rules/bad.yaml', line: 7, message: 'rule "typo": condition: unknown field proc.nmae' });
  });

  it('an error in an appended condition names the file and line of the append; skip-if-unknown-filter skips quietly', () => {
    const r = loadRuleSources([
      { file: 'a.yaml', text: SHELL },
      {
        file: 'b.yaml',
        text: `- rule: shell in a pod
  append: true
  condition: >
    and not
    proc.pnmae = sshd
- rule: future
  condition: evt.type = execve and proc.future_field = x
  output: x
  priority: NOTICE
  skip-if-unknown-filter: true
- rule: twice
  condition: proc.name = a
  condition: proc.name = b
  output: x
  priority: NOTICE
`,
      },
    ]);
    expect(r.rules).toEqual([]);
    expect(r.errors.map((e) => e.text)).toEqual([
      'b.yaml:5: rule "shell in a pod": condition: unknown field proc.pnmae',
      'b.yaml:13: rule "twice": condition given twice',
    ]);
  });

  it('a file whose YAML does not parse is reported and skipped; other files load', () => {
    const r = loadRuleSources([
      { file: 'broken.yaml', text: '- rule: x\n  condition: [unclosed\n  output: y\n' },
      { file: 'ok.yaml', text: SHELL },
      { file: 'map.yaml', text: 'rule: x\n' },
    ]);
    expect(r.rules.map((x) => x.name)).toEqual(['shell in a pod']);
    expect(r.errors.map((e) => e.text)).toHaveLength(2);
    expect(r.errors[0]!.text).toMatch(/^broken\.yaml:\d+: YAML: /);
    expect(r.errors[1]!.text).toBe('map.yaml:1: a rules file is a list of rule, macro and list items');
  });

  it('reads files and directories (their *.yaml and *.yml, sorted), in the order given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-security-rules-'));
    try {
      mkdirSync(join(dir, 'd'));
      writeFileSync(join(dir, 'd', '20-override.yml'), '- rule: shell in a pod\n  condition: proc.name = zsh\n  output: o\n  priority: DEBUG\n');
      writeFileSync(join(dir, 'd', '10-base.yaml'), SHELL);
      writeFileSync(join(dir, 'd', 'README.md'), 'not rules');
      writeFileSync(join(dir, 'last.yaml'), '- rule: x\n  condition: proc.name = x\n  output: x\n  priority: warning\n  action: kill\n');
      const r = loadRuleFiles([join(dir, 'd'), join(dir, 'last.yaml'), join(dir, 'missing.yaml')]);
      expect(byName(r, 'shell in a pod')!.condition).toBe('proc.name = zsh');
      expect(r.errors.map((e) => e.text)).toEqual([
        `${join(dir, 'missing.yaml')}: cannot read: ENOENT: no such file or directory, stat '${join(dir, 'missing.yaml')}'`,
        expect.stringMatching(new RegExp(`^${join(dir, 'last.yaml')}:2: rule "x": action kill: `)),
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('output', () => {
  it('fills %fields, <NA> for absent ones, and ends a field at a sentence dot', () => {
    const out = compileOutput('Shell %proc.name (%proc.cmdline) by uid=%user.uid in %k8s.ns.name/%k8s.pod.name app=%k8s.pod.label[app] file=%fd.name. 100% done.');
    expect(out.format(exec()).text).toBe('Shell bash (bash -c id) by uid=1000 in shop/web-1 app=web file=<NA>. 100% done.');
    expect(out.format(hostExec()).text).toBe('Shell bash (bash -c id) by uid=1000 in <NA>/<NA> app=<NA> file=<NA>. 100% done.');
  });
  it('output_fields has every field named once, keyed as written, typed, null when absent', () => {
    const out = compileOutput('%proc.name %user.uid %fd.name %proc.name %k8s.pod.label.app %evt.is_open_write');
    expect(out.fields.map((f) => f.name)).toEqual(['proc.name', 'user.uid', 'fd.name', 'k8s.pod.label.app', 'evt.is_open_write']);
    expect(out.format(exec()).fields).toEqual({ 'proc.name': 'bash', 'user.uid': 1000, 'fd.name': null, 'k8s.pod.label.app': 'web', 'evt.is_open_write': null });
  });
  it('rejects an unknown field', () => {
    expect(() => compileOutput('x %proc.nmae')).toThrow('unknown field %proc.nmae');
  });
});

describe('rule engine', () => {
  const RULES = `
- rule: shell
  condition: evt.type = execve and proc.name = bash and container.id != host
  output: shell %proc.name in %k8s.pod.name (file %fd.name)
  priority: WARNING
  tags: [shell]
- rule: any process named bash
  condition: proc.name = bash
  output: bash
  priority: DEBUG
- rule: connect
  condition: evt.type = connect and fd.sport = 22
  output: ssh to %fd.sip:%fd.sport
  priority: NOTICE
- rule: not a connect
  condition: not (evt.type = connect or evt.type in (openat, openat2)) and proc.name = curl
  output: x
  priority: NOTICE
- rule: never
  condition: evt.type = execve and evt.type = connect
  output: x
  priority: NOTICE
- rule: off
  condition: proc.name = bash
  output: x
  priority: NOTICE
  enabled: false
`;
  const loaded = loadRuleSources([{ file: 'engine.yaml', text: RULES }]);
  const engine = new RuleEngine(loaded.rules, { hostname: 'node-a' });
  it('loads the fixture', () => expect(loaded.errors).toEqual([]));

  it('raises Falco-shaped alerts for every rule whose condition holds, in load order', () => {
    const e = exec();
    const alerts = engine.evaluate(e);
    expect(alerts.map((a) => a.rule)).toEqual(['shell', 'any process named bash']);
    expect(alerts[0]).toEqual({
      time: '2026-12-07T20:00:00.000Z',
      rule: 'shell',
      priority: 'WARNING',
      output: 'shell bash in web-1 (file <NA>)',
      output_fields: { 'proc.name': 'bash', 'k8s.pod.name': 'web-1', 'fd.name': null },
      tags: ['shell'],
      source: 'syscall',
      hostname: 'node-a',
      action: 'alert',
      event: e,
    });
    expect(JSON.parse(JSON.stringify(alerts[0]))).toMatchObject({ rule: 'shell', output_fields: { 'fd.name': null } });
    expect(engine.evaluate(hostExec()).map((a) => a.rule)).toEqual(['any process named bash']);
    expect(engine.evaluate(connect('10.1.1.1', 22)).map((a) => a.output)).toEqual(['ssh to 10.1.1.1:22']);
    expect(engine.evaluate(connect('10.1.1.1', 80))).toEqual([]);
  });

  it('indexes rules by the event types their conditions allow', () => {
    const names = (t: SecurityEventType) => engine.rulesFor(t).map((r) => r.name);
    expect(names('execve')).toEqual(['shell', 'any process named bash', 'not a connect']);
    expect(names('connect')).toEqual(['any process named bash', 'connect']);
    expect(names('openat')).toEqual(['any process named bash']);
    expect(names('procexit')).toEqual(['any process named bash', 'not a connect']);
    expect(engine.rules.map((r) => r.name)).not.toContain('off');
    // An event is only tried against its type's rules.
    const e = connect('10.1.1.1', 22);
    const tried: string[] = [];
    const spied = new RuleEngine(
      loaded.rules.map((r) => ({ ...r, matches: (ev: SecurityEvent) => (tried.push(r.name), r.matches(ev)) })),
      { hostname: 'n' },
    );
    spied.evaluate(e);
    expect(tried).toEqual(['any process named bash', 'connect']);
  });

  it('computes event types through not, and, or', () => {
    const types = (c: string) => [...eventTypesOf(resolveCondition(parseCondition(c), EMPTY))].sort();
    expect(types('proc.name = x')).toEqual([...EVENT_TYPES].sort());
    expect(types('evt.type = execve')).toEqual(['execve']);
    expect(types('evt.type != execve and evt.type != connect')).toEqual(['openat', 'openat2', 'procexit', 'setuid']);
    expect(types('not evt.type in (execve, connect, openat, openat2)')).toEqual(['procexit', 'setuid']);
    expect(types('evt.type = execve or proc.name = x')).toEqual([...EVENT_TYPES].sort());
    expect(types('evt.type = execve or evt.type = setuid and proc.name = x')).toEqual(['execve', 'setuid']);
    expect(types('not (evt.type = execve and proc.name = x)')).toEqual([...EVENT_TYPES].sort());
    expect(types('not (evt.type = execve or proc.name = x)')).toEqual(['connect', 'openat', 'openat2', 'procexit', 'setuid']);
    expect(types('evt.type = open')).toEqual([]);
  });
});

describe('enforcement: kill and deny-connect rules reduce to what the kernel enforces', () => {
  const HEAD = `
- list: miner_names
  items: [xmrig, kdevtmpfsi]
- list: miner_paths
  items: [/opt/miner/run]
- macro: spawned_process
  condition: evt.type = execve and evt.dir = <
- macro: container
  condition: container.id != host
`;
  const rule = (name: string, condition: string, action: string) =>
    `- rule: ${name}\n  condition: ${condition}\n  output: "%proc.name"\n  priority: CRITICAL\n  action: ${action}\n`;
  const load = (...items: string[]) => loadRuleSources([{ file: 'enforce.yaml', text: HEAD + items.join('') }]);

  it('a kill rule gives its binaries by name and path, and a pod predicate', () => {
    const r = load(
      rule('kill nc', 'spawned_process and (proc.name in (nc, ncat) or proc.exepath = /usr/bin/socat) and k8s.ns.name = shop and k8s.pod.label.app != db', 'kill'),
      rule('kill anywhere in pods', 'evt.type = execve and container and proc.exepath in (/usr/bin/wget)', 'kill'),
    );
    expect(r.errors).toEqual([]);
    const plan = new RuleEngine(r.rules, { hostname: 'n' }).enforcement();
    expect(plan.denyConnect).toEqual([]);
    expect(plan.kill.map((k) => ({ rule: k.rule, binaries: k.binaries }))).toEqual([
      { rule: 'kill nc', binaries: { names: ['nc', 'ncat'], paths: ['/usr/bin/socat'] } },
      { rule: 'kill anywhere in pods', binaries: { names: [], paths: ['/usr/bin/wget'] } },
    ]);
    const [nc, wget] = plan.kill as [KillEnforcement, KillEnforcement];
    expect(nc.pods({ app: 'web' }, 'shop', 'web-1')).toBe(true);
    expect(nc.pods({ app: 'db' }, 'shop', 'db-1')).toBe(false);
    expect(nc.pods({ app: 'web' }, 'other', 'web-1')).toBe(false);
    expect(nc.pods({}, 'shop', 'x')).toBe(false); // no app label: != fails on an absent field, as in Falco
    expect(wget.pods({}, 'any', 'pod')).toBe(true);
    // The rule still alerts like any other, with its action.
    expect(new RuleEngine(r.rules, { hostname: 'n' }).evaluate(exec({ proc: { name: 'nc' }, pod: { ...POD, labels: { app: 'web' } } }))[0]).toMatchObject({ rule: 'kill nc', action: 'kill' });
  });

  it('lists expand into the binaries; disabled rules are not enforced', () => {
    const r = load(
      rule('miners', 'spawned_process and container and (proc.name in (miner_names) or proc.exepath in (miner_paths, /tmp/x))', 'kill'),
      '- rule: miners\n  enabled: false\n',
    );
    expect(r.errors).toEqual([]);
    expect(r.rules[0]!.enforcement).toMatchObject({ binaries: { names: ['xmrig', 'kdevtmpfsi'], paths: ['/opt/miner/run', '/tmp/x'] } });
    expect(new RuleEngine(r.rules, { hostname: 'n' }).enforcement().kill).toEqual([]);
  });

  it('a deny-connect rule gives denied ports, or the only allowed ones, and a pod predicate', () => {
    const r = load(
      '- list: allowed\n  items: [53, 443]\n',
      rule('no ssh', 'evt.type = connect and fd.sport in (22, 2222) and k8s.pod.label[app] = web', 'deny-connect'),
      rule('only allowed', 'evt.type = connect and not fd.sport in (allowed) and fd.sport != 80 and k8s.ns.name in (shop, web)', 'deny-connect'),
      rule('deny minus allow', 'evt.type = connect and fd.sport in (22, 23, 25) and fd.sport != 23 and container', 'deny-connect'),
    );
    expect(r.errors).toEqual([]);
    const plan = new RuleEngine(r.rules, { hostname: 'n' }).enforcement();
    expect(plan.kill).toEqual([]);
    expect(plan.denyConnect.map(({ rule, deniedPorts, allowedPorts }) => ({ rule, deniedPorts, allowedPorts }))).toEqual([
      { rule: 'no ssh', deniedPorts: [22, 2222], allowedPorts: undefined },
      { rule: 'only allowed', deniedPorts: undefined, allowedPorts: [53, 80, 443] },
      { rule: 'deny minus allow', deniedPorts: [22, 25], allowedPorts: undefined },
    ]);
    expect(plan.denyConnect[0]!.pods({ app: 'web' }, 'x', 'y')).toBe(true);
    expect(plan.denyConnect[0]!.pods({ app: 'api' }, 'x', 'y')).toBe(false);
    expect(plan.denyConnect[1]!.pods({}, 'web', 'y')).toBe(true);
    expect(plan.denyConnect[1]!.pods({}, 'kube-system', 'y')).toBe(false);
  });

  it('refuses, with file, line and the term at fault, a rule the kernel cannot enforce', () => {
    const cases: [string, string][] = [
      [rule('unscoped', 'spawned_process and proc.name = nc', 'kill'), 'must be scoped to pods'],
      [rule('host too', 'spawned_process and proc.name = nc and not k8s.ns.name = kube-system', 'kill'), 'must be scoped to pods'],
      [rule('host only', 'spawned_process and proc.name = nc and container.id = host', 'kill'), 'must be scoped to pods'],
      [rule('no type', 'proc.name = nc and container', 'kill'), 'must limit evt.type to execve'],
      [rule('two types', 'evt.type in (execve, connect) and proc.name = nc and container', 'kill'), 'must limit evt.type to execve'],
      [rule('type in or', '(evt.type = execve or proc.name = nc) and container', 'kill'), 'must limit evt.type to execve'],
      [rule('kill on connect', 'evt.type = connect and fd.sport = 22 and container', 'kill'), 'must limit evt.type to execve'],
      [rule('no binaries', 'spawned_process and container', 'kill'), 'names no binaries'],
      [rule('uid', 'spawned_process and container and proc.name = nc and user.uid = 0', 'kill'), 'cannot enforce "user.uid = 0"'],
      [rule('exclusion', 'spawned_process and container and not proc.name in (sh, bash)', 'kill'), 'cannot enforce "not proc.name in (sh, bash)"'],
      [rule('prefix', 'spawned_process and container and proc.exepath startswith /tmp/', 'kill'), 'cannot enforce "proc.exepath startswith /tmp/"'],
      [rule('mixed or', 'spawned_process and container and (proc.name = nc or proc.pname = sh)', 'kill'), 'cannot enforce "proc.pname = sh"'],
      [rule('long comm', 'spawned_process and container and proc.name = a-very-long-binary-name', 'kill'), "longer than the kernel's 15-byte process name"],
      [rule('relative', 'spawned_process and container and proc.exepath = bin/nc', 'kill'), 'proc.exepath bin/nc is not an absolute path'],
      [rule('container id', 'spawned_process and proc.name = nc and container.id = abc', 'kill'), 'container.id can only be compared with host'],
      [rule('no ports', 'evt.type = connect and container', 'deny-connect'), 'names no ports'],
      [rule('port range', 'evt.type = connect and container and fd.sport > 1024', 'deny-connect'), 'cannot enforce "fd.sport > 1024"'],
      [rule('address', 'evt.type = connect and container and fd.sip = 10.0.0.1', 'deny-connect'), 'cannot enforce "fd.sip = 10.0.0.1"'],
      [rule('connect unscoped', 'evt.type = connect and fd.sport = 22', 'deny-connect'), 'must be scoped to pods'],
      [rule('connect on exec', 'spawned_process and fd.sport = 22 and container', 'deny-connect'), 'must limit evt.type to connect'],
    ];
    const r = load(...cases.map(([text]) => text), rule('fine', 'spawned_process and container and proc.name = nc', 'kill'));
    expect(r.rules.map((x) => x.name)).toEqual(['fine']);
    expect(r.errors).toHaveLength(cases.length);
    cases.forEach(([text, message], i) => {
      const e = r.errors[i]!;
      const name = /rule: (.*)/.exec(text)![1]!;
      expect(e.text).toContain(`enforce.yaml:${e.line}: rule "${name}": action ${/action: (.*)/.exec(text)![1]}: `);
      expect(e.text).toContain(message);
      // The line of the rule's condition.
      expect((HEAD + cases.map(([t]) => t).join('')).split('\n')[e.line - 1]).toContain(`condition: ${/condition: (.*)/.exec(text)![1]}`);
    });
  });
});

describe('shipped default rules', () => {
  const DEFAULTS = join(import.meta.dirname, '..', 'security', 'rules', 'default.yaml');
  const loaded = loadRuleFiles([DEFAULTS]);
  const engine = new RuleEngine(loaded.rules, { hostname: 'node-a' });
  const fired = (e: SecurityEvent) => engine.evaluate(e).map((a) => a.rule);
  const SHELL = 'Shell started in a pod';
  const SHADOW = 'Read of /etc/shadow';
  const WRITE = 'Write below /etc or /usr/bin in a pod';
  const PKG = 'Package manager run in a pod';
  const ESCALATION = 'Privilege escalation to root in a pod';
  const OUTBOUND = 'Outbound connection to a port outside the allowed list';
  const onHost = (e: SecurityEvent): SecurityEvent => {
    const h = { ...e, host: true };
    delete h.pod;
    return h;
  };

  it('load without errors, all alert-only, with the rules the issue lists', () => {
    expect(loaded.errors).toEqual([]);
    expect(engine.rules.map((r) => r.name)).toEqual([SHELL, SHADOW, WRITE, PKG, ESCALATION, OUTBOUND]);
    expect(engine.rules.every((r) => r.action === 'alert')).toBe(true);
    expect(engine.enforcement()).toEqual({ kill: [], denyConnect: [] });
  });

  it('a shell in a pod, not on the host', () => {
    expect(fired(exec())).toEqual([SHELL]);
    expect(fired(exec({ proc: { name: 'sh', exepath: '/bin/sh', args: ['sh'] } }))).toEqual([SHELL]);
    expect(fired(hostExec())).toEqual([]);
    expect(fired(exec({ proc: { name: 'ls', exepath: '/bin/ls', args: ['ls'] } }))).toEqual([]);
    expect(fired(exec({ type: 'procexit', exit: { code: 0, signal: 0 } }))).toEqual([]);
    const alert = engine.evaluate(exec())[0]!;
    expect(alert.output).toBe('Shell started in a pod (pod=shop/web-1 shell=bash parent=containerd-shim cmdline=bash -c id uid=1000 pid=4242 container=c0ffee)');
    expect(alert).toMatchObject({ priority: 'WARNING', hostname: 'node-a', tags: ['container', 'shell', 'mitre_execution'] });
  });

  it('a read of /etc/shadow, in a pod or on the host, except by the authentication programs', () => {
    expect(fired(open('/etc/shadow', ['O_RDONLY', 'O_CLOEXEC']))).toEqual([SHADOW]);
    expect(fired(onHost(open('/etc/shadow', ['O_RDONLY'])))).toEqual([SHADOW]);
    expect(fired(onHost({ ...open('/etc/shadow', ['O_RDONLY']), proc: { ...exec().proc, name: 'sshd' } }))).toEqual([]);
    expect(fired(open('/etc/shadow-', ['O_RDONLY']))).toEqual([]);
    expect(fired(open('/etc/passwd', ['O_RDONLY']))).toEqual([]);
  });

  it('a write below /etc or /usr/bin in a pod, not a read, not elsewhere, not on the host', () => {
    expect(fired(open('/etc/passwd', ['O_WRONLY']))).toEqual([WRITE]);
    expect(fired(open('/etc/cron.d/evil', ['O_WRONLY', 'O_CREAT', 'O_TRUNC']))).toEqual([WRITE]);
    expect(fired(open('/usr/bin/ls', ['O_RDWR']))).toEqual([WRITE]);
    expect(fired({ ...open('/usr/bin/x', [], 0o101), type: 'openat2' })).toEqual([WRITE]);
    expect(fired(open('/etc/shadow', ['O_RDWR']))).toEqual([SHADOW, WRITE]);
    expect(fired(open('/etc/hosts', ['O_RDONLY']))).toEqual([]);
    expect(fired(open('/usr/lib/x', ['O_WRONLY']))).toEqual([]);
    expect(fired(open('/etcetera', ['O_WRONLY']))).toEqual([]);
    expect(fired(onHost(open('/etc/passwd', ['O_WRONLY'])))).toEqual([]);
  });

  it('a package manager run in a pod, not on the host', () => {
    for (const name of ['apt-get', 'apk', 'dnf', 'pip']) {
      expect(fired(exec({ proc: { name, exepath: `/usr/bin/${name}`, args: [name, 'install', 'x'] } })), name).toEqual([PKG]);
    }
    expect(fired(hostExec({ name: 'apt-get', exepath: '/usr/bin/apt-get', args: ['apt-get'] }))).toEqual([]);
  });

  it('a pod process that becomes root by setuid or a setuid binary, not root from the start, not on the host', () => {
    const su = { name: 'su', exepath: '/bin/su', args: ['su'], uid: 0, previousUid: 1000 };
    expect(fired(exec({ proc: su }))).toEqual([ESCALATION]);
    expect(fired(exec({ type: 'setuid', proc: { uid: 0, previousUid: 33, name: 'exploit', exepath: '/tmp/exploit', args: ['exploit'] } }))).toEqual([ESCALATION]);
    expect(fired(exec({ proc: { ...su, previousUid: undefined } }))).toEqual([]);
    expect(fired(exec({ type: 'setuid', proc: { uid: 0, previousUid: 0 } }))).toEqual([]);
    expect(fired(exec({ type: 'setuid', proc: { uid: 1000, previousUid: 0, name: 'nginx' } }))).toEqual([]);
    expect(fired(hostExec(su))).toEqual([]);
  });

  it('an outbound connection from a pod to a port outside the allowed list, not loopback, not on the host', () => {
    expect(fired(connect('203.0.113.9', 4444))).toEqual([OUTBOUND]);
    expect(engine.evaluate(connect('203.0.113.9', 4444))[0]!.output).toContain('connection=203.0.113.9:4444 proto=tcp');
    for (const port of [53, 80, 443]) expect(fired(connect('203.0.113.9', port))).toEqual([]);
    expect(fired(connect('127.0.0.1', 4444))).toEqual([]);
    expect(fired(onHost(connect('203.0.113.9', 4444)))).toEqual([]);
  });

  it('are tuned from a later file: a list appended, a rule switched off', () => {
    expect(defaultRulesSource()).toEqual({ file: DEFAULTS, text: readFileSync(DEFAULTS, 'utf8') });
    const later = loadRuleSources([
      defaultRulesSource(),
      { file: 'local.yaml', text: `- list: allowed_outbound_ports\n  items: [4444]\n  append: true\n- rule: ${SHELL}\n  enabled: false\n` },
    ]);
    expect(later.errors).toEqual([]);
    const tuned = new RuleEngine(later.rules, { hostname: 'n' });
    expect(tuned.evaluate(connect('203.0.113.9', 4444))).toEqual([]);
    expect(tuned.evaluate(connect('203.0.113.9', 22)).map((a) => a.rule)).toEqual([OUTBOUND]);
    expect(tuned.evaluate(exec())).toEqual([]);
  });
});
