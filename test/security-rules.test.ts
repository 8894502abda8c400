import { describe, expect, it } from 'vitest';
import type { SecurityEvent } from '../contract/security.ts';
import { compileCondition, resolveCondition, type ConditionScope } from '../security/rules/condition-compile.ts';
import { ConditionSyntaxError, parseCondition } from '../security/rules/condition-parse.ts';
import { lookupField } from '../security/rules/fields.ts';

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
