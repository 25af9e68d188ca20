/*
 * A slow or failing disk for one process, by LD_PRELOAD: every fsync and
 * fdatasync, and every write to a file opened with O_DSYNC or O_SYNC (what
 * makes a write durable by itself), on a file under CPC_DISK_SHIM_PREFIX is
 * first held for a while, or fails with EIO, as the control file
 * CPC_DISK_SHIM_CTL says at the moment of the call:
 *
 *   <delay in ms> ok     the call waits that long, then goes through
 *   <delay in ms> eio    the call waits that long, then fails with EIO
 *
 * Reads, and writes that are not durable, are left alone: the page cache
 * answers them on a real slow disk too. The file is read on every call, so
 * the test changes the disk's behaviour while the process runs.
 *
 * Built at test time: cc -shared -fPIC -O2 -o disk-shim.so disk-shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int under_prefix(int fd) {
  const char *prefix = getenv("CPC_DISK_SHIM_PREFIX");
  if (!prefix || !*prefix) return 0;
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return 0;
  target[n] = 0;
  return strncmp(target, prefix, strlen(prefix)) == 0;
}

static int is_durable_write(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_DSYNC) != 0;
}

/* 0: go on; -1: fail with EIO (errno set). */
static int fault(int fd) {
  if (!under_prefix(fd)) return 0;
  const char *ctl = getenv("CPC_DISK_SHIM_CTL");
  if (!ctl) return 0;
  int saved = errno;
  char buf[64] = {0};
  int cfd = open(ctl, O_RDONLY | O_CLOEXEC);
  if (cfd < 0) {
    errno = saved;
    return 0;
  }
  ssize_t got = read(cfd, buf, sizeof buf - 1);
  close(cfd);
  if (got < 0) got = 0;
  buf[got] = 0;
  long delay = strtol(buf, NULL, 10);
  if (delay > 0) {
    struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  if (strstr(buf, "eio")) {
    errno = EIO;
    return -1;
  }
  errno = saved;
  return 0;
}

typedef int (*sync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev64_fn)(int, const struct iovec *, int, off64_t);

#define REAL(name, type) \
  static type real_##name; \
  if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
  REAL(fsync, sync_fn);
  if (fault(fd) < 0) return -1;
  return real_fsync(fd);
}

int fdatasync(int fd) {
  REAL(fdatasync, sync_fn);
  if (fault(fd) < 0) return -1;
  return real_fdatasync(fd);
}

ssize_t write(int fd, const void *buf, size_t count) {
  REAL(write, write_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_write(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  REAL(writev, writev_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_writev(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
  REAL(pwrite, pwrite_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
  REAL(pwrite64, pwrite64_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_pwrite64(fd, buf, count, offset);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
  REAL(pwritev, pwritev_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_pwritev(fd, iov, iovcnt, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t offset) {
  REAL(pwritev64, pwritev64_fn);
  if (is_durable_write(fd) && fault(fd) < 0) return -1;
  return real_pwritev64(fd, iov, iovcnt, offset);
}
