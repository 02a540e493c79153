// Real eu-stack and gdb output, generated on Debian 12 (elfutils 0.188, gdb 13) from small
// programs and cores written by gdb's gcore (no core_pattern involved). Shared by
// backtrace.test.ts and signature.test.ts.

/** eu-stack --core=core -e prog -l -m -s -i: a C++ program, main thread in pause(), a worker thread in a template member function (prog built with g++ -g -O0 -pthread) */
export const EU_STACK_CPP_THREADS = `PID 5027 - core module memory map
0x00007f48298b8000-0x00007f48298ba000 linux-vdso.so.1
  [e025128345ce65b719dab776555f2b64ee0204a1]
  -
0x00007f48298ba000-0x00007f48298ee2d8 ld-linux-x86-64.so.2
  [7ebc65e52f2bbea498b4040fa92f7238377aaba9]
  /lib64/ld-linux-x86-64.so.2
  /usr/lib/debug/.build-id/7e/bc65e52f2bbea498b4040fa92f7238377aaba9.debug
0x00007f482933e000-0x00007f482941d110 libm.so.6
  [d6e6f9e3af1243eed9bf5efd366dd015a9f22c13]
  /lib/x86_64-linux-gnu/libm.so.6
  /usr/lib/debug/.build-id/d6/e6f9e3af1243eed9bf5efd366dd015a9f22c13.debug
0x00007f482941e000-0x00007f48295fff50 libc.so.6
  [93ac61ec5a8eb1396f9fbd350e3169a558528a40]
  /lib/x86_64-linux-gnu/libc.so.6
  /usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug
0x00007f4829887000-0x00007f48298a62c8 libgcc_s.so.1
  [6f03384c2e3c38887dd3ba5a24b2e18c17e2f0e0]
  /lib/x86_64-linux-gnu/libgcc_s.so.1
0x00007f4829600000-0x00007f4829819880 libstdc++.so.6
  [289ee39f8c07bd4fa48102dfeeb7e6f9c76158b4]
  /lib/x86_64-linux-gnu/libstdc++.so.6
0x000056485523c000-0x00005648552400b0 prog
  [3fef9f61cce4e35eebbc21066f9cc2880d5ba778]
  prog
  -
PID 5027 - core
TID 5027:
#0  0x00007f48294f1df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000056485523d322 main - prog
    /tmp/fbxgen/prog.cpp:14:17
#2  0x00007f482944524a __libc_start_call_main - libc.so.6
    ../sysdeps/nptl/libc_start_call_main.h:58:16
#3  0x00007f4829445305 __libc_start_main_impl - libc.so.6
    ../csu/libc-start.c:360:3
#4  0x000056485523d181 _start - prog
TID 5029:
#0  0x00007f48294f1df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000056485523d47c int ns::Widget::spin<int>(int, std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&) - prog
    /tmp/fbxgen/prog.cpp:6:103
#2  0x000056485523d290 crash_here - prog
    /tmp/fbxgen/prog.cpp:9:88
#3  0x000056485523d2f1 worker - prog
    /tmp/fbxgen/prog.cpp:10:55
#4  0x00007f48294a71f5 start_thread - libc.so.6
    ./nptl/pthread_create.c:442:8
#5  0x00007f48295278ec __clone3 - libc.so.6
    ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81
`;

/** eu-stack on a stripped executable (gcc -O0 -s): frames without a function name */
export const EU_STACK_STRIPPED = `PID 5134 - core module memory map
0x00007ff5c4295000-0x00007ff5c4297000 linux-vdso.so.1
  [e025128345ce65b719dab776555f2b64ee0204a1]
  -
0x00007ff5c4297000-0x00007ff5c42cb2d8 ld-linux-x86-64.so.2
  [7ebc65e52f2bbea498b4040fa92f7238377aaba9]
  /lib64/ld-linux-x86-64.so.2
  /usr/lib/debug/.build-id/7e/bc65e52f2bbea498b4040fa92f7238377aaba9.debug
0x00007ff5c40a2000-0x00007ff5c4283f50 libc.so.6
  [93ac61ec5a8eb1396f9fbd350e3169a558528a40]
  /lib/x86_64-linux-gnu/libc.so.6
  /usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug
0x000055a7efeef000-0x000055a7efef3020 mysleep
  [f678b629ec229fb726e8c9900975d9fed8641325]
  mysleep
PID 5134 - core
TID 5134:
#0  0x00007ff5c4175dd0 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000055a7efef0142 - mysleep
#2  0x000055a7efef014d - mysleep
#3  0x000055a7efef0159 - mysleep
#4  0x00007ff5c40c924a __libc_start_call_main - libc.so.6
    ../sysdeps/nptl/libc_start_call_main.h:58:16
#5  0x00007ff5c40c9305 __libc_start_main_impl - libc.so.6
    ../csu/libc-start.c:360:3
#6  0x000055a7efef0071 - mysleep
`;

/** eu-stack on test/fixtures/threads-abort.c (core taken by gdb's gcore at the SIGABRT), libc debug info available */
export const EU_STACK_ABORT = `PID 6109 - core module memory map
0x00007ffff7fc8000-0x00007ffff7fca000 linux-vdso.so.1
  [e025128345ce65b719dab776555f2b64ee0204a1]
  -
0x00007ffff7fca000-0x00007ffff7ffe2d8 ld-linux-x86-64.so.2
  [7ebc65e52f2bbea498b4040fa92f7238377aaba9]
  /lib64/ld-linux-x86-64.so.2
  /usr/lib/debug/.build-id/7e/bc65e52f2bbea498b4040fa92f7238377aaba9.debug
0x00007ffff7dd5000-0x00007ffff7fb6f50 libc.so.6
  [93ac61ec5a8eb1396f9fbd350e3169a558528a40]
  /lib/x86_64-linux-gnu/libc.so.6
  /usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug
0x0000555555554000-0x0000555555558038 tabort
  [695e2afc4f84d6df389c161fe0e4084b619126aa]
  tabort
  -
PID 6109 - core
TID 6115:
#0  0x00007ffff7e5feec __pthread_kill_implementation - libc.so.6
    ./nptl/pthread_kill.c:44:76
#1  0x00007ffff7e10fb2 __GI_raise - libc.so.6
    ../sysdeps/posix/raise.c:26:13
#2  0x00007ffff7dfb472 __GI_abort - libc.so.6
    ./stdlib/abort.c:79:7
#3  0x0000555555555185 flightbox_worker_abort - tabort
    /work/main/test/fixtures/threads-abort.c:6:63
#4  0x00005555555551a0 worker - tabort
    /work/main/test/fixtures/threads-abort.c:7:61
#5  0x00007ffff7e5e1f5 start_thread - libc.so.6
    ./nptl/pthread_create.c:442:8
#6  0x00007ffff7ede8ec __clone3 - libc.so.6
    ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81
TID 6109:
#0  0x00007ffff7ea8df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x0000555555555212 main - tabort
    /work/main/test/fixtures/threads-abort.c:12:12
#2  0x00007ffff7dfc24a __libc_start_call_main - libc.so.6
    ../sysdeps/nptl/libc_start_call_main.h:58:16
#3  0x00007ffff7dfc305 __libc_start_main_impl - libc.so.6
    ../csu/libc-start.c:360:3
#4  0x00005555555550a1 _start - tabort
TID 6112:
#0  0x00007ffff7ea8df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 start_thread - libc.so.6
    ./nptl/pthread_create.c:442:8
#3  0x00007ffff7ede8ec __clone3 - libc.so.6
    ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81
TID 6113:
#0  0x00007ffff7ea8df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 start_thread - libc.so.6
    ./nptl/pthread_create.c:442:8
#3  0x00007ffff7ede8ec __clone3 - libc.so.6
    ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81
TID 6114:
#0  0x00007ffff7ea8df2 __libc_pause - libc.so.6
    ../sysdeps/unix/sysv/linux/pause.c:29:10
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 start_thread - libc.so.6
    ./nptl/pthread_create.c:442:8
#3  0x00007ffff7ede8ec __clone3 - libc.so.6
    ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81
`;

/** eu-stack on a C++ SIGSEGV through std::function and a lambda */
export const EU_STACK_CPP_SEGV = `PID 6121 - core module memory map
0x00007ffff7fc8000-0x00007ffff7fca000 linux-vdso.so.1
  [e025128345ce65b719dab776555f2b64ee0204a1]
  -
0x00007ffff7fca000-0x00007ffff7ffe2d8 ld-linux-x86-64.so.2
  [7ebc65e52f2bbea498b4040fa92f7238377aaba9]
  /lib64/ld-linux-x86-64.so.2
  /usr/lib/debug/.build-id/7e/bc65e52f2bbea498b4040fa92f7238377aaba9.debug
0x00007ffff7eb7000-0x00007ffff7f96110 libm.so.6
  [d6e6f9e3af1243eed9bf5efd366dd015a9f22c13]
  /lib/x86_64-linux-gnu/libm.so.6
  /usr/lib/debug/.build-id/d6/e6f9e3af1243eed9bf5efd366dd015a9f22c13.debug
0x00007ffff7a1e000-0x00007ffff7bfff50 libc.so.6
  [93ac61ec5a8eb1396f9fbd350e3169a558528a40]
  /lib/x86_64-linux-gnu/libc.so.6
  /usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug
0x00007ffff7f97000-0x00007ffff7fb62c8 libgcc_s.so.1
  [6f03384c2e3c38887dd3ba5a24b2e18c17e2f0e0]
  /lib/x86_64-linux-gnu/libgcc_s.so.1
0x00007ffff7c00000-0x00007ffff7e19880 libstdc++.so.6
  [289ee39f8c07bd4fa48102dfeeb7e6f9c76158b4]
  /lib/x86_64-linux-gnu/libstdc++.so.6
0x0000555555554000-0x000055555555e118 cpp2
  [fa176529c59591bbfacf1138b719ad06aed11056]
  cpp2
  -
PID 6121 - core
TID 6121:
#0  0x0000555555556345 crash_here(std::vector<int, std::allocator<int> >&) - cpp2
    /tmp/fbxgen/cpp2.cpp:7:96
#1  0x0000555555556365 main::{lambda()#1}::operator()() const - cpp2
    /tmp/fbxgen/cpp2.cpp:10:47
#2  0x00005555555568ca __invoke_impl<void, main()::<lambda()>&> - cpp2
    /usr/include/c++/12/bits/invoke.h:61:36
#3  0x00005555555567b1 __invoke_r<void, main()::<lambda()>&> - cpp2
    /usr/include/c++/12/bits/invoke.h:111:28
#4  0x00005555555566a3 _M_invoke - cpp2
    /usr/include/c++/12/bits/std_function.h:290:30
#5  0x0000555555557066 std::function<void ()>::operator()() const - cpp2
    /usr/include/c++/12/bits/std_function.h:591:9
#6  0x00005555555564c9 main - cpp2
    /tmp/fbxgen/cpp2.cpp:12:33
#7  0x00007ffff7a4524a __libc_start_call_main - libc.so.6
    ../sysdeps/nptl/libc_start_call_main.h:58:16
#8  0x00007ffff7a45305 __libc_start_main_impl - libc.so.6
    ../csu/libc-start.c:360:3
#9  0x0000555555556251 _start - cpp2
`;

/** the same abort core as EU_STACK_ABORT, with --debuginfo-path=/nonexistent: what a host without libc debug symbols sees */
export const EU_STACK_ABORT_NO_DEBUGINFO = `PID 6109 - core module memory map
0x00007ffff7fc8000-0x00007ffff7fca000 linux-vdso.so.1
  [e025128345ce65b719dab776555f2b64ee0204a1]
  -
0x00007ffff7fca000-0x00007ffff7ffe2d8 ld-linux-x86-64.so.2
  [7ebc65e52f2bbea498b4040fa92f7238377aaba9]
  /lib64/ld-linux-x86-64.so.2
0x00007ffff7dd5000-0x00007ffff7fb6f50 libc.so.6
  [93ac61ec5a8eb1396f9fbd350e3169a558528a40]
  /lib/x86_64-linux-gnu/libc.so.6
0x0000555555554000-0x0000555555558038 tabort
  [695e2afc4f84d6df389c161fe0e4084b619126aa]
  tabort
  -
PID 6109 - core
TID 6115:
#0  0x00007ffff7e5feec - libc.so.6
#1  0x00007ffff7e10fb2 raise - libc.so.6
#2  0x00007ffff7dfb472 abort - libc.so.6
#3  0x0000555555555185 flightbox_worker_abort - tabort
    /work/main/test/fixtures/threads-abort.c:6:63
#4  0x00005555555551a0 worker - tabort
    /work/main/test/fixtures/threads-abort.c:7:61
#5  0x00007ffff7e5e1f5 - libc.so.6
#6  0x00007ffff7ede8ec - libc.so.6
TID 6109:
#0  0x00007ffff7ea8df2 pause - libc.so.6
#1  0x0000555555555212 main - tabort
    /work/main/test/fixtures/threads-abort.c:12:12
#2  0x00007ffff7dfc24a - libc.so.6
#3  0x00007ffff7dfc305 __libc_start_main - libc.so.6
#4  0x00005555555550a1 _start - tabort
TID 6112:
#0  0x00007ffff7ea8df2 pause - libc.so.6
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 - libc.so.6
#3  0x00007ffff7ede8ec - libc.so.6
TID 6113:
#0  0x00007ffff7ea8df2 pause - libc.so.6
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 - libc.so.6
#3  0x00007ffff7ede8ec - libc.so.6
TID 6114:
#0  0x00007ffff7ea8df2 pause - libc.so.6
#1  0x000055555555517a idle - tabort
    /work/main/test/fixtures/threads-abort.c:5:52
#2  0x00007ffff7e5e1f5 - libc.so.6
#3  0x00007ffff7ede8ec - libc.so.6
`;

/** gdb -batch -nx -ex 'thread apply all bt' prog core (same core as EU_STACK_CPP_THREADS) */
export const GDB_CPP_THREADS = `[New LWP 5027]
[New LWP 5029]
[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".
Core was generated by \`./prog'.
#0  0x00007f48294f1df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
29	../sysdeps/unix/sysv/linux/pause.c: No such file or directory.
[Current thread is 1 (Thread 0x7f4829886440 (LWP 5027))]

Thread 2 (Thread 0x7f482933d6c0 (LWP 5029)):
#0  0x00007f48294f1df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000056485523d47c in ns::Widget::spin<int> (this=0x7f482933ce6f, x=3, s="abc") at prog.cpp:6
#2  0x000056485523d290 in crash_here (n=3) at prog.cpp:9
#3  0x000056485523d2f1 in worker (arg=0x0) at prog.cpp:10
#4  0x00007f48294a71f5 in start_thread (arg=<optimized out>) at ./nptl/pthread_create.c:442
#5  0x00007f48295278ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 1 (Thread 0x7f4829886440 (LWP 5027)):
#0  0x00007f48294f1df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000056485523d322 in main () at prog.cpp:14
`;

/** gdb on the stripped executable's core: '?? ()' frames */
export const GDB_STRIPPED = `[New LWP 5134]
[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".
Core was generated by \`./mysleep'.
#0  0x00007ff5c4175dd0 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
29	../sysdeps/unix/sysv/linux/pause.c: No such file or directory.

Thread 1 (Thread 0x7ff5c409f740 (LWP 5134)):
#0  0x00007ff5c4175dd0 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000055a7efef0142 in ?? ()
#2  0x000055a7efef014d in ?? ()
#3  0x000055a7efef0159 in ?? ()
#4  0x00007ff5c40c924a in __libc_start_call_main (main=main@entry=0x55a7efef0150, argc=argc@entry=1, argv=argv@entry=0x7fff0f64eae8) at ../sysdeps/nptl/libc_start_call_main.h:58
#5  0x00007ff5c40c9305 in __libc_start_main_impl (main=0x55a7efef0150, argc=1, argv=0x7fff0f64eae8, init=<optimized out>, fini=<optimized out>, rtld_fini=<optimized out>, stack_end=0x7fff0f64ead8) at ../csu/libc-start.c:360
#6  0x000055a7efef0071 in ?? ()
`;

/** gdb -ex run -ex 'thread apply all bt' on test/fixtures/segv.c (live process: thread headers carry the thread name) */
export const GDB_SEGV_LIVE = `[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".

Program received signal SIGSEGV, Segmentation fault.
0x0000555555555145 in flightbox_crash_here (p=0x0) at /work/main/test/fixtures/segv.c:4
4	__attribute__((noinline)) void flightbox_crash_here(volatile int *p) { *p = 42; }

Thread 1 (Thread 0x7ffff7dd2740 (LWP 5317) "segv"):
#0  0x0000555555555145 in flightbox_crash_here (p=0x0) at /work/main/test/fixtures/segv.c:4
#1  0x000055555555515c in flightbox_caller () at /work/main/test/fixtures/segv.c:5
#2  0x0000555555555183 in main (argc=1, argv=0x7fffffffe7f8) at /work/main/test/fixtures/segv.c:9
`;

/** gdb -ex run on test/fixtures/threads-abort.c: frame #0 without an address */
export const GDB_ABORT_LIVE = `[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".
[New Thread 0x7ffff7dd16c0 (LWP 5343)]
[New Thread 0x7ffff75d06c0 (LWP 5344)]
[New Thread 0x7ffff6dcf6c0 (LWP 5345)]
[New Thread 0x7ffff65ce6c0 (LWP 5346)]

Thread 5 "tabort" received signal SIGABRT, Aborted.
[Switching to Thread 0x7ffff65ce6c0 (LWP 5346)]
__pthread_kill_implementation (threadid=<optimized out>, signo=signo@entry=6, no_tid=no_tid@entry=0) at ./nptl/pthread_kill.c:44
44	./nptl/pthread_kill.c: No such file or directory.

Thread 5 (Thread 0x7ffff65ce6c0 (LWP 5346) "tabort"):
#0  __pthread_kill_implementation (threadid=<optimized out>, signo=signo@entry=6, no_tid=no_tid@entry=0) at ./nptl/pthread_kill.c:44
#1  0x00007ffff7e5ff4f in __pthread_kill_internal (signo=6, threadid=<optimized out>) at ./nptl/pthread_kill.c:78
#2  0x00007ffff7e10fb2 in __GI_raise (sig=sig@entry=6) at ../sysdeps/posix/raise.c:26
#3  0x00007ffff7dfb472 in __GI_abort () at ./stdlib/abort.c:79
#4  0x0000555555555185 in flightbox_worker_abort () at /work/main/test/fixtures/threads-abort.c:6
#5  0x00005555555551a0 in worker (arg=0x0) at /work/main/test/fixtures/threads-abort.c:7
#6  0x00007ffff7e5e1f5 in start_thread (arg=<optimized out>) at ./nptl/pthread_create.c:442
#7  0x00007ffff7ede8ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 4 (Thread 0x7ffff6dcf6c0 (LWP 5345) "tabort"):
#0  0x00007ffff7ea8df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in start_thread (arg=<optimized out>) at ./nptl/pthread_create.c:442
#3  0x00007ffff7ede8ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 3 (Thread 0x7ffff75d06c0 (LWP 5344) "tabort"):
#0  0x00007ffff7ea8df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in start_thread (arg=<optimized out>) at ./nptl/pthread_create.c:442
#3  0x00007ffff7ede8ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 2 (Thread 0x7ffff7dd16c0 (LWP 5343) "tabort"):
#0  0x00007ffff7ea8df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in start_thread (arg=<optimized out>) at ./nptl/pthread_create.c:442
#3  0x00007ffff7ede8ec in clone3 () at ../sysdeps/unix/sysv/linux/x86_64/clone3.S:81

Thread 1 (Thread 0x7ffff7dd2740 (LWP 5336) "tabort"):
#0  0x00007ffff7ea8df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x0000555555555212 in main () at /work/main/test/fixtures/threads-abort.c:12
`;

/** gdb -ex run on a C++ SIGSEGV through std::function: demangled names with spaces and parentheses */
export const GDB_CPP_SEGV = `[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".

Program received signal SIGSEGV, Segmentation fault.
0x0000555555556345 in crash_here (v=std::vector of length 3, capacity 3 = {...}) at cpp2.cpp:7
7	__attribute__((noinline)) void crash_here(std::vector<int> &v) { volatile int *p = nullptr; *p = v[0]; }

Thread 1 (Thread 0x7ffff7eb6440 (LWP 6061) "cpp2"):
#0  0x0000555555556345 in crash_here (v=std::vector of length 3, capacity 3 = {...}) at cpp2.cpp:7
#1  0x0000555555556365 in operator() (__closure=0x555555570f10) at cpp2.cpp:10
#2  0x00005555555568ca in std::__invoke_impl<void, main()::<lambda()>&>(std::__invoke_other, struct {...} &) (__f=...) at /usr/include/c++/12/bits/invoke.h:61
#3  0x00005555555567b1 in std::__invoke_r<void, main()::<lambda()>&>(struct {...} &) (__fn=...) at /usr/include/c++/12/bits/invoke.h:111
#4  0x00005555555566a3 in std::_Function_handler<void(), main()::<lambda()> >::_M_invoke(const std::_Any_data &) (__functor=...) at /usr/include/c++/12/bits/std_function.h:290
#5  0x0000555555557066 in std::function<void ()>::operator()() const (this=0x555555570f10) at /usr/include/c++/12/bits/std_function.h:591
#6  0x00005555555564c9 in main () at cpp2.cpp:12
`;

/** gdb on the abort core without libc debug info: 'from /lib/...' frames */
export const GDB_ABORT_NO_DEBUGINFO = `[New LWP 6115]
[New LWP 6109]
[New LWP 6112]
[New LWP 6113]
[New LWP 6114]
[Thread debugging using libthread_db enabled]
Using host libthread_db library "/lib/x86_64-linux-gnu/libthread_db.so.1".
Core was generated by \`/tmp/fbxgen/tabort'.
Program terminated with signal SIGABRT, Aborted.
#0  0x00007ffff7e5feec in ?? () from /lib/x86_64-linux-gnu/libc.so.6
[Current thread is 1 (Thread 0x7ffff65ce6c0 (LWP 6115))]

Thread 5 (Thread 0x7ffff6dcf6c0 (LWP 6114)):
#0  0x00007ffff7ea8df2 in pause () from /lib/x86_64-linux-gnu/libc.so.6
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in ?? () from /lib/x86_64-linux-gnu/libc.so.6
#3  0x00007ffff7ede8ec in ?? () from /lib/x86_64-linux-gnu/libc.so.6

Thread 4 (Thread 0x7ffff75d06c0 (LWP 6113)):
#0  0x00007ffff7ea8df2 in pause () from /lib/x86_64-linux-gnu/libc.so.6
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in ?? () from /lib/x86_64-linux-gnu/libc.so.6
#3  0x00007ffff7ede8ec in ?? () from /lib/x86_64-linux-gnu/libc.so.6

Thread 3 (Thread 0x7ffff7dd16c0 (LWP 6112)):
#0  0x00007ffff7ea8df2 in pause () from /lib/x86_64-linux-gnu/libc.so.6
#1  0x000055555555517a in idle (arg=0x0) at /work/main/test/fixtures/threads-abort.c:5
#2  0x00007ffff7e5e1f5 in ?? () from /lib/x86_64-linux-gnu/libc.so.6
#3  0x00007ffff7ede8ec in ?? () from /lib/x86_64-linux-gnu/libc.so.6

Thread 2 (Thread 0x7ffff7dd2740 (LWP 6109)):
#0  0x00007ffff7ea8df2 in pause () from /lib/x86_64-linux-gnu/libc.so.6
#1  0x0000555555555212 in main () at /work/main/test/fixtures/threads-abort.c:12

Thread 1 (Thread 0x7ffff65ce6c0 (LWP 6115)):
#0  0x00007ffff7e5feec in ?? () from /lib/x86_64-linux-gnu/libc.so.6
#1  0x00007ffff7e10fb2 in raise () from /lib/x86_64-linux-gnu/libc.so.6
#2  0x00007ffff7dfb472 in abort () from /lib/x86_64-linux-gnu/libc.so.6
#3  0x0000555555555185 in flightbox_worker_abort () at /work/main/test/fixtures/threads-abort.c:6
#4  0x00005555555551a0 in worker (arg=0x0) at /work/main/test/fixtures/threads-abort.c:7
#5  0x00007ffff7e5e1f5 in ?? () from /lib/x86_64-linux-gnu/libc.so.6
#6  0x00007ffff7ede8ec in ?? () from /lib/x86_64-linux-gnu/libc.so.6
`;
