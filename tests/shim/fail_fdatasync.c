/* LD_PRELOAD shim for strata's fault tests: the next fdatasync(2) (or fsync(2)) fails with EIO
 * once the file named by STRATA_FAIL_FSYNC_TRIGGER exists; the shim deletes the file, so each
 * trigger fails exactly one call. Built by tests/tests/fsync_failure.rs with the system cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int triggered(void) {
    const char *trigger = getenv("STRATA_FAIL_FSYNC_TRIGGER");
    return trigger != NULL && unlink(trigger) == 0;
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (triggered()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (triggered()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
