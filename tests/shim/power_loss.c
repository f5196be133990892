/* LD_PRELOAD shim for strata's power-loss campaign (tests/tests/power_loss.rs).
 *
 * It keeps, for every file the process writes, what a power loss would leave of it: the length
 * and the bytes it had at its last fsync/fdatasync. STRATA_CRASH_AT=N makes the Nth write,
 * pwrite, fsync or fdatasync call (counting only descriptors above 2) a power loss: instead of
 * running it, the shim puts every written file back to its last synced state (old bytes of
 * overwritten ranges restored, unsynced growth cut off) and ends the process with _exit(86).
 * What it does not model: directory entries (a create or rename that was not followed by a
 * directory fsync still survives) and torn sectors. STRATA_CRASH_DIR limits which files count:
 * only descriptors whose path (from /proc/self/fd) starts with it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FILES 4096

struct undo {
    off_t off;
    size_t len;
    char *old;
    struct undo *next;
};

struct tracked {
    dev_t dev;
    ino_t ino;
    int fd;           /* our own dup, valid even after the program closes its descriptor */
    off_t synced_len; /* length at the last sync (or when first seen) */
    struct undo *undo;/* newest first: old bytes of ranges below synced_len overwritten since */
};

static struct tracked files[MAX_FILES];
static int nfiles;
static long calls;
static long crash_at = -2;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void init(void) {
    if (crash_at != -2) return;
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    const char *at = getenv("STRATA_CRASH_AT");
    crash_at = at ? atol(at) : -1;
}

static int in_dir(int fd) {
    const char *dir = getenv("STRATA_CRASH_DIR");
    if (dir == NULL) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strncmp(path, dir, strlen(dir)) == 0;
}

static struct tracked *find(int fd, int create) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    for (int i = 0; i < nfiles; i++)
        if (files[i].dev == st.st_dev && files[i].ino == st.st_ino) return &files[i];
    if (!create || nfiles == MAX_FILES || !in_dir(fd)) return NULL;
    struct tracked *t = &files[nfiles++];
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->fd = dup(fd);
    t->synced_len = st.st_size; /* what existed before this process wrote is on disk */
    t->undo = NULL;
    return t;
}

static void power_loss(void) {
    for (int i = 0; i < nfiles; i++) {
        struct tracked *t = &files[i];
        for (struct undo *u = t->undo; u != NULL; u = u->next)
            real_pwrite64(t->fd, u->old, u->len, u->off);
        if (ftruncate(t->fd, t->synced_len) != 0) { /* the file is gone or read-only */ }
    }
    _exit(86);
}

/* Counts a call; a power loss if it is the chosen one. */
static void tick(void) {
    if (++calls == crash_at) power_loss();
}

/* Saves the synced bytes that a write of [off, off+len) overwrites. */
static void save(struct tracked *t, off_t off, size_t len) {
    if (t == NULL || off >= t->synced_len) return;
    size_t n = len;
    if (off + (off_t)n > t->synced_len) n = t->synced_len - off;
    struct undo *u = malloc(sizeof *u);
    u->off = off;
    u->len = n;
    u->old = malloc(n);
    ssize_t got = pread(t->fd, u->old, n, off);
    if (got < 0) got = 0;
    u->len = got;
    u->next = t->undo;
    t->undo = u;
}

static void synced(struct tracked *t) {
    if (t == NULL) return;
    struct stat st;
    if (fstat(t->fd, &st) == 0) t->synced_len = st.st_size;
    while (t->undo) {
        struct undo *u = t->undo;
        t->undo = u->next;
        free(u->old);
        free(u);
    }
}

ssize_t write(int fd, const void *buf, size_t n) {
    init();
    if (fd <= 2) return real_write(fd, buf, n);
    struct tracked *t = find(fd, 1);
    if (t != NULL) {
        tick();
        off_t at = lseek(fd, 0, SEEK_CUR);
        if (at >= 0) save(t, at, n);
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    init();
    struct tracked *t = fd > 2 ? find(fd, 1) : NULL;
    if (t != NULL) {
        tick();
        save(t, off, n);
    }
    return real_pwrite64(fd, buf, n, off);
}

int fsync(int fd) {
    init();
    struct tracked *t = fd > 2 ? find(fd, 0) : NULL;
    if (t != NULL) tick();
    int r = real_fsync(fd);
    if (r == 0) synced(t);
    return r;
}

int fdatasync(int fd) {
    init();
    struct tracked *t = fd > 2 ? find(fd, 0) : NULL;
    if (t != NULL) tick();
    int r = real_fdatasync(fd);
    if (r == 0) synced(t);
    return r;
}
