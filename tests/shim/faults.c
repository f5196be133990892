/* LD_PRELOAD shim for strata's I/O-error campaign (tests/tests/io_faults.rs).
 *
 * STRATA_FAULT="KIND:N:ERRNO" makes the Nth call of KIND fail with ERRNO, once; KIND is one of
 * open, write, pwrite, fsync (fsync and fdatasync), rename, mkdir. Only calls on the database
 * count: opens and renames and mkdirs of paths under STRATA_FAULT_DIR, and writes and syncs of
 * descriptors above 2 (never stdout or stderr). When the fault fires, the shim creates the file
 * STRATA_FAULT_FIRED, so the campaign knows the workload reached call N. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static char kind[16];
static long target = -1;
static int fail_errno;
static long count;
static int parsed;

static void parse(void) {
    if (parsed) return;
    parsed = 1;
    const char *spec = getenv("STRATA_FAULT");
    if (spec == NULL) return;
    if (sscanf(spec, "%15[a-z]:%ld:%d", kind, &target, &fail_errno) != 3) target = -1;
}

static int under_dir(const char *path) {
    const char *dir = getenv("STRATA_FAULT_DIR");
    return path != NULL && dir != NULL && strncmp(path, dir, strlen(dir)) == 0;
}

/* Counts a call of `k`; returns 1 if this one must fail (errno is then set). */
static int fault(const char *k) {
    parse();
    if (target < 0 || strcmp(k, kind) != 0) return 0;
    if (++count != target) return 0;
    const char *fired = getenv("STRATA_FAULT_FIRED");
    if (fired != NULL) {
        int saved = errno;
        FILE *f = fopen(fired, "w");
        if (f != NULL) fclose(f);
        errno = saved;
    }
    errno = fail_errno;
    return 1;
}

#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__) = NULL; \
    if (real_##name == NULL) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

int open64(const char *path, int flags, ...) {
    REAL(int, open64, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (under_dir(path) && fault("open")) return -1;
    return real_open64(path, flags, mode);
}

int open(const char *path, int flags, ...) {
    REAL(int, open, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (under_dir(path) && fault("open")) return -1;
    return real_open(path, flags, mode);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, write, int, const void *, size_t);
    if (fd > 2 && fault("write")) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    if (fd > 2 && fault("pwrite")) return -1;
    return real_pwrite64(fd, buf, n, off);
}

int fsync(int fd) {
    REAL(int, fsync, int);
    if (fd > 2 && fault("fsync")) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    if (fd > 2 && fault("fsync")) return -1;
    return real_fdatasync(fd);
}

int rename(const char *from, const char *to) {
    REAL(int, rename, const char *, const char *);
    if (under_dir(from) && fault("rename")) return -1;
    return real_rename(from, to);
}

int mkdir(const char *path, mode_t mode) {
    REAL(int, mkdir, const char *, mode_t);
    if (under_dir(path) && fault("mkdir")) return -1;
    return real_mkdir(path, mode);
}
