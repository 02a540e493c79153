// Signal names and numbers, as the kernel numbers them on Linux. Pure.

export const SIGNAL_NAMES: Readonly<Record<number, string>> = {
  1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE',
  9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM',
  16: 'SIGSTKFLT', 17: 'SIGCHLD', 18: 'SIGCONT', 19: 'SIGSTOP', 20: 'SIGTSTP', 21: 'SIGTTIN', 22: 'SIGTTOU',
  23: 'SIGURG', 24: 'SIGXCPU', 25: 'SIGXFSZ', 26: 'SIGVTALRM', 27: 'SIGPROF', 28: 'SIGWINCH', 29: 'SIGIO',
  30: 'SIGPWR', 31: 'SIGSYS',
};

export function signalName(n: number): string {
  return SIGNAL_NAMES[n] ?? (n >= 34 && n <= 64 ? `SIGRTMIN+${n - 34}` : `SIG${n}`);
}

/** "SIGSEGV", "segv", "11" → 11; undefined if unknown. */
export function parseSignal(s: string): number | undefined {
  if (/^\d+$/.test(s)) return Number(s);
  const up = s.toUpperCase();
  const name = up.startsWith('SIG') ? up : `SIG${up}`;
  // The forms signalName() prints for signals without a name: SIGRTMIN+n and SIGn.
  const rt = /^SIGRTMIN\+(\d{1,2})$/.exec(name);
  if (rt) return Number(rt[1]) + 34 <= 64 ? Number(rt[1]) + 34 : undefined;
  const num = /^SIG(\d{1,2})$/.exec(name);
  if (num) return Number(num[1]);
  for (const [num, n] of Object.entries(SIGNAL_NAMES)) if (n === name) return Number(num);
  return undefined;
}
