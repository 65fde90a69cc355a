/* conveyor-spawner: launches and reaps the engine's attempts so Python does not have to.
 *
 * One spawner runs per SpawnerExecutor, as a child of the engine. It reads
 * requests on stdin and writes events on stdout; every record is a 4-byte
 * little-endian body length followed by the body. Body layouts (integers
 * little-endian, "str" = u32 length + bytes, no terminator):
 *
 *   requests  LAUNCH  u8 1, u64 id, u32 launcher, str workdir, str log, str spare, str cgroups,
 *                     str exec_path, u32 argc, str argv[argc], u32 envc, str env[envc] ("NAME=value")
 *                     (launcher: 0 = fork and exec; N = hand it to warm launcher N when that one
 *                     is ready, else fork and exec as for 0: see "Warm launches" below)
 *                     (spare: an empty file made ahead, renamed into place as the log;
 *                     "" = create the log; cgroups: "\n"-separated cgroup.procs files
 *                     the child joins before anything else, "" = none)
 *             STOP    u8 2, u64 id, u32 grace_ms   (SIGTERM the group, SIGKILL after grace;
 *                                                   grace 0 = SIGKILL now)
 *             KILL    u8 3, u64 id                 (SIGKILL the group)
 *             QUIT    u8 4                         (SIGKILL every group, reap all, exit)
 *             FAIL    u8 5, u64 id, str message    (echoed back as FAILED: lets Python report
 *                                                   its own start errors from the reader thread)
 *             ARM     u8 6, u64 after, <a LAUNCH body from its id on>
 *                     (launch it the moment `after` exits or fails to start; `after` may
 *                     itself be an armed launch, making a chain; at once if `after` is
 *                     neither running nor armed; one launch armed on each id)
 *             DISARM  u8 7, u64 after              (drop the launch armed on `after`, and the
 *                                                   chain behind it: DISARMED for each;
 *                                                   nothing for what was launched already)
 *             LAUNCHER u8 8, u32 n, str exec_path, u32 argc, str argv[argc], u32 envc, str env[envc]
 *                                                  (start warm launcher n, 1..8, unless it runs)
 *   events    HELLO   u8 0, u32 protocol version
 *             STARTED u8 1, u64 id, i32 pid
 *             FAILED  u8 2, u64 id, str message    ("<path>: <strerror>")
 *             EXITED  u8 3, u64 id, i32 code       (exit status; killed by signal N -> 128 + N)
 *             DISARMED u8 4, u64 id                (an armed launch that will never happen)
 *
 * An armed launch follows its attempt's EXITED at once, before anything else is read:
 * the engine decides what runs next while the current attempt is still running, so a
 * slot never waits for Python between two attempts. Whoever reads EXITED for `after`
 * without a DISARMED before it knows the armed attempt was launched.
 *
 * The child environment is the spawner's own environ (the engine's base env)
 * overlaid with the request's env entries. Each attempt runs in its own process
 * group (pid = pgid; not its own session: setsid also makes a scheduler autogroup per
 * job, a cost per launch, and the spawner's session has no controlling terminal anyway)
 * with cwd = workdir, stdin = /dev/null and stdout + stderr appended
 * to the log. When an attempt's main process exits, its whole group is SIGKILLed
 * before the leader is reaped, so the group id cannot have been reused.
 *
 * Warm launches. A warm launcher (warm_launcher.py) is a Python process that has imported
 * a job's modules once and forks a copy of itself for each attempt, which then runs the
 * job's `python -m MODULE` in-process: no interpreter start, no imports. It is our child,
 * with one end of a stream socket as its fd 3 and stdout on /dev/null; it sends READY
 * (u32 1, u8 0) once its modules are loaded. A warm LAUNCH makes the log as usual, then
 * sends the launcher: u32 length, u64 id, str workdir, str log, str cgroups ("\0"-separated),
 * u32 argc, str argv[argc], u32 envc, str env[envc] (the whole environment), and waits for
 * its answer: u32 length, u8 1, u64 id, i32 pid, u8 stage, i32 errno (stage 0: started;
 * 1 workdir, 3 cgroup, 4 log, 5 fork: what failed). The launcher double-forks, so the
 * attempt is reparented to us (we are a child subreaper) and reaped here like any other;
 * its pid reaches us before it can. A launcher that is not READY yet, or gone, means a
 * plain fork and exec: a warm launch is only ever faster, never different in outcome.
 *
 * EOF on stdin without QUIT means the engine died (kill -9): the spawner exits
 * at once and leaves the attempts running, so the next engine's kill_orphans
 * finds them by their environment token and accounts for them. Only QUIT kills.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION 4
#define MAX_RECORD (64u << 20)

enum { REQ_LAUNCH = 1, REQ_STOP = 2, REQ_KILL = 3, REQ_QUIT = 4, REQ_FAIL = 5, REQ_ARM = 6, REQ_DISARM = 7,
       REQ_LAUNCHER = 8 };
#define MAX_LAUNCHERS 8
#define LAUNCHER_ANSWER_MS 10000
enum { EV_HELLO = 0, EV_STARTED = 1, EV_FAILED = 2, EV_EXITED = 3, EV_DISARMED = 4 };

extern char **environ;

typedef struct {
    uint64_t id;
    pid_t pid;
    int stopping;
    int64_t kill_at_ms; /* 0 = no pending SIGKILL */
} attempt_t;

typedef struct {
    uint64_t after;      /* the attempt (running or itself armed) whose end launches this */
    unsigned char *body; /* a LAUNCH body from its id on */
    size_t len;
} armed_t;

typedef struct {
    pid_t pid; /* 0 = not running */
    int fd;    /* our end of its socket; -1 = none */
    int ready; /* it sent READY: warm launches go to it */
} launcher_t;

static launcher_t launchers[MAX_LAUNCHERS + 1]; /* by number; [0] unused */

static armed_t *armed;
static size_t n_armed, cap_armed;

static attempt_t *attempts;
static size_t n_attempts, cap_attempts;
static sigset_t child_mask; /* the mask jobs get: the one we started with */
static int devnull_fd = -1;
static int quitting;
static int stdin_open = 1;

/* ---- small utilities --------------------------------------------------- */

static void die(const char *what) {
    fprintf(stderr, "conveyor-spawner: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *ptr, size_t size) {
    void *out = realloc(ptr, size ? size : 1);
    if (!out) {
        fprintf(stderr, "conveyor-spawner: out of memory\n");
        exit(2);
    }
    return out;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output: events are buffered and flushed before each poll ---------- */

static unsigned char *out_buf;
static size_t out_len, out_cap;
static int out_broken; /* the engine is gone; keep running, stop writing */

static void out_put(const void *data, size_t len) {
    if (out_len + len > out_cap) {
        out_cap = (out_len + len) * 2;
        out_buf = xrealloc(out_buf, out_cap);
    }
    memcpy(out_buf + out_len, data, len);
    out_len += len;
}

static void put_u32(uint32_t v) {
    unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    out_put(b, 4);
}

static void put_u64(uint64_t v) {
    put_u32((uint32_t)(v & 0xffffffffu));
    put_u32((uint32_t)(v >> 32));
}

static void put_u8(unsigned v) {
    unsigned char b = (unsigned char)v;
    out_put(&b, 1);
}

static void emit_started(uint64_t id, pid_t pid) {
    put_u32(1 + 8 + 4);
    put_u8(EV_STARTED);
    put_u64(id);
    put_u32((uint32_t)pid);
}

static void emit_exited(uint64_t id, int code) {
    put_u32(1 + 8 + 4);
    put_u8(EV_EXITED);
    put_u64(id);
    put_u32((uint32_t)code);
}

static void emit_disarmed(uint64_t id) {
    put_u32(1 + 8);
    put_u8(EV_DISARMED);
    put_u64(id);
}

static void emit_failed(uint64_t id, const char *subject, size_t subject_len, const char *detail) {
    size_t detail_len = strlen(detail);
    size_t msg_len = subject_len ? subject_len + 2 + detail_len : detail_len;
    put_u32((uint32_t)(1 + 8 + 4 + msg_len));
    put_u8(EV_FAILED);
    put_u64(id);
    put_u32((uint32_t)msg_len);
    if (subject_len) {
        out_put(subject, subject_len);
        out_put(": ", 2);
    }
    out_put(detail, detail_len);
}

static void flush_out(void) {
    size_t done = 0;
    while (done < out_len && !out_broken) {
        ssize_t n = write(STDOUT_FILENO, out_buf + done, out_len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            out_broken = 1; /* EPIPE: nobody listens any more */
            break;
        }
        done += (size_t)n;
    }
    out_len = 0;
}

/* ---- attempts ---------------------------------------------------------- */

static attempt_t *find_by_id(uint64_t id) {
    for (size_t i = 0; i < n_attempts; i++)
        if (attempts[i].id == id) return &attempts[i];
    return NULL;
}

static void add_attempt(uint64_t id, pid_t pid) {
    if (n_attempts == cap_attempts) {
        cap_attempts = cap_attempts ? cap_attempts * 2 : 16;
        attempts = xrealloc(attempts, cap_attempts * sizeof *attempts);
    }
    attempts[n_attempts].id = id;
    attempts[n_attempts].pid = pid;
    attempts[n_attempts].stopping = 0;
    attempts[n_attempts].kill_at_ms = 0;
    n_attempts++;
}

static void signal_group(pid_t pgid, int sig) {
    if (pgid > 1) kill(-pgid, sig); /* ESRCH: already gone, fine */
}

static uint64_t body_id(const unsigned char *body) {
    uint64_t id = 0;
    for (int i = 7; i >= 0; i--) id = id << 8 | body[i];
    return id;
}

/* ---- armed launches ---------------------------------------------------- */

static armed_t *find_armed_after(uint64_t after) {
    for (size_t i = 0; i < n_armed; i++)
        if (armed[i].after == after) return &armed[i];
    return NULL;
}

static int is_armed_id(uint64_t id) {
    for (size_t i = 0; i < n_armed; i++)
        if (body_id(armed[i].body) == id) return 1;
    return 0;
}

/* Removes the launch armed on `after`; the caller owns (and frees) the returned body. */
static unsigned char *take_armed(uint64_t after, size_t *len) {
    armed_t *a = find_armed_after(after);
    if (a == NULL) return NULL;
    unsigned char *body = a->body;
    *len = a->len;
    *a = armed[--n_armed];
    return body;
}

/* Drops the launch armed on `after` and the chain behind it, telling the engine of each. */
static void drop_chain(uint64_t after) {
    size_t len;
    unsigned char *body;
    while ((body = take_armed(after, &len)) != NULL) {
        after = body_id(body);
        emit_disarmed(after);
        free(body);
    }
}

static void launch_body(const unsigned char *body, size_t len);

/* `id` ended or never started: its slot is free for what was armed on it. After EOF (the
 * engine died) or QUIT nothing new starts. */
static void release_slot(uint64_t id) {
    if (quitting || !stdin_open) {
        drop_chain(id);
        return;
    }
    size_t len;
    unsigned char *body = take_armed(id, &len);
    if (body != NULL) {
        launch_body(body, len);
        free(body);
    }
}

static void kill_all(void) {
    while (n_armed) drop_chain(armed[0].after);
    for (size_t i = 0; i < n_attempts; i++) signal_group(attempts[i].pid, SIGKILL);
}

static void launcher_gone(launcher_t *l, int kill_it) {
    if (l->fd >= 0) close(l->fd);
    if (kill_it && l->pid > 0) kill(l->pid, SIGKILL); /* reaped by reap_children */
    l->fd = -1;
    l->ready = 0;
    if (kill_it) l->pid = 0;
}

static void launcher_reaped(pid_t pid) {
    for (int n = 1; n <= MAX_LAUNCHERS; n++)
        if (launchers[n].pid == pid) {
            launcher_gone(&launchers[n], 0);
            launchers[n].pid = 0;
        }
}

/* Reaps every exited child. The leader is still a zombie (WNOWAIT) when its
 * group is killed, so its pid, hence the pgid, cannot have been recycled. */
static void reap_children(void) {
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR) continue;
            return; /* ECHILD: no children */
        }
        pid_t pid = info.si_pid;
        if (pid == 0) return;
        size_t i = 0;
        while (i < n_attempts && attempts[i].pid != pid) i++;
        /* Like a container: the job ends with its main process. Only an attempt's group: as a
         * subreaper we also reap a launcher, and processes an attempt left behind. */
        if (i < n_attempts) signal_group(pid, SIGKILL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (i == n_attempts) {
            launcher_reaped(pid);
            continue;
        }
        int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        uint64_t id = attempts[i].id;
        emit_exited(id, code);
        attempts[i] = attempts[--n_attempts];
        /* Start what the engine chose for this slot, without waiting for it to hear of the exit. */
        release_slot(id);
    }
}

/* ---- launching --------------------------------------------------------- */

/* mkdir -p; on failure sets errno and returns the path that failed in *failed. */
static int make_dirs(char *path, const char **failed) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    if (errno != ENOENT) {
        *failed = path;
        return -1;
    }
    char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path) {
        *failed = path;
        return -1;
    }
    *slash = '\0';
    int rc = make_dirs(path, failed);
    *slash = '/';
    if (rc < 0) return -1; /* *failed names the component that could not be made */
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    *failed = path;
    return -1;
}

static int open_log(char *path, const char **failed) {
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
    int fd = open(path, flags, 0644);
    if (fd >= 0 || errno != ENOENT) {
        if (fd < 0) *failed = path;
        return fd;
    }
    char *slash = strrchr(path, '/');
    if (slash != NULL && slash != path) {
        *slash = '\0';
        int rc = make_dirs(path, failed);
        *slash = '/';
        if (rc < 0) return -1;
    }
    fd = open(path, flags, 0644);
    if (fd < 0) *failed = path;
    return fd;
}

/* Renames a spare empty file (made ahead by the engine) into place as the log. A rename
 * allocates no inode; on ext4 without a journal a create can cost 20 times more. Never
 * replaces an existing log; on any failure the log is simply created by open_log. */
static void claim_spare(const char *spare, char *log_path) {
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, AT_FDCWD, spare, AT_FDCWD, log_path, 1u /* RENAME_NOREPLACE */) == 0 ||
        errno != ENOENT)
        return;
    char *slash = strrchr(log_path, '/');
    if (slash == NULL || slash == log_path) return;
    const char *failed = NULL;
    *slash = '\0';
    int rc = make_dirs(log_path, &failed);
    *slash = '/';
    if (rc == 0) syscall(SYS_renameat2, AT_FDCWD, spare, AT_FDCWD, log_path, 1u);
#else
    (void)spare;
    (void)log_path;
#endif
}

/* What the vfork child tells its (suspended) parent; shared memory under vfork. */
static volatile int child_errno;
static volatile int child_stage; /* 1 = chdir, 2 = exec, 3 = join cgroup */

typedef struct {
    const unsigned char *p, *end;
    int bad;
} reader_t;

static uint32_t rd_u32(reader_t *r) {
    if (r->end - r->p < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static uint64_t rd_u64(reader_t *r) {
    uint64_t lo = rd_u32(r);
    return lo | (uint64_t)rd_u32(r) << 32;
}

/* Returns a freshly malloc'd NUL-terminated copy of the next string. */
static char *rd_str(reader_t *r, size_t *len_out) {
    uint32_t len = rd_u32(r);
    if (r->bad || (size_t)(r->end - r->p) < len) {
        r->bad = 1;
        return NULL;
    }
    char *s = xrealloc(NULL, (size_t)len + 1);
    memcpy(s, r->p, len);
    s[len] = '\0';
    r->p += len;
    if (len_out) *len_out = len;
    return s;
}

/* A u32 count and that many strings, as a NULL-terminated array; a malformed list ends the
 * spawner (the engine sent it: a bug, not a job's mistake). `request` names it in the message. */
static char **rd_strings(reader_t *r, uint32_t *count, int at_least_one, const char *request) {
    uint32_t n = rd_u32(r);
    if (r->bad || (at_least_one && n == 0) || n > (uint32_t)(r->end - r->p) / 4) {
        fprintf(stderr, "conveyor-spawner: malformed %s request\n", request);
        exit(2);
    }
    char **out = xrealloc(NULL, ((size_t)n + 1) * sizeof *out);
    for (uint32_t i = 0; i < n; i++) out[i] = rd_str(r, NULL);
    out[n] = NULL;
    if (r->bad) {
        fprintf(stderr, "conveyor-spawner: malformed %s request\n", request);
        exit(2);
    }
    *count = n;
    return out;
}

static void free_strings(char **strings, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) free(strings[i]);
    free(strings);
}

/* What a process we start gets back of what the spawner changed for itself. Async-signal-safe
 * (it runs in the vfork child too). */
static void restore_child_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &child_mask, NULL);
}

static size_t name_len(const char *entry) {
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* environ overlaid with the request's entries (same name: the request wins). */
static char **merge_env(char **extra, size_t n_extra) {
    size_t n_base = 0;
    while (environ[n_base]) n_base++;
    char **env = xrealloc(NULL, (n_base + n_extra + 1) * sizeof *env);
    size_t n = 0;
    for (size_t i = 0; i < n_base; i++) {
        size_t len = name_len(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = name_len(extra[j]) == len && memcmp(extra[j], environ[i], len) == 0;
        if (!overridden) env[n++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++) env[n++] = extra[j];
    env[n] = NULL;
    return env;
}

/* Candidate programs for a bare name: each PATH folder + "/" + name, like execvpe
 * but with the child's PATH (glibc's execvpe would search the spawner's own). */
static char **path_candidates(const char *name, char **env) {
    const char *path = NULL;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "PATH=", 5) == 0) path = env[i] + 5;
    if (path == NULL || *path == '\0') path = "/bin:/usr/bin";
    size_t count = 2;
    for (const char *c = path; *c; c++) count += *c == ':';
    char **out = xrealloc(NULL, count * sizeof *out);
    size_t n = 0, name_size = strlen(name);
    const char *start = path;
    for (;;) {
        const char *stop = strchr(start, ':');
        size_t dir_len = stop ? (size_t)(stop - start) : strlen(start);
        if (dir_len == 0) { /* an empty entry means the current folder */
            start = ".";
            dir_len = 1;
        }
        char *full = xrealloc(NULL, dir_len + 1 + name_size + 1);
        memcpy(full, start, dir_len);
        full[dir_len] = '/';
        memcpy(full + dir_len + 1, name, name_size + 1);
        out[n++] = full;
        if (!stop) break;
        start = stop + 1;
    }
    out[n] = NULL;
    return out;
}

/* Runs in the vfork child: only async-signal-safe calls, no heap, no stdio. */
static void __attribute__((noreturn)) child_exec(const char *workdir, int log_fd, char **argv, char **env,
                                                 const char *exec_path, char **candidates,
                                                 const char *cgroups, size_t cgroups_len) {
    restore_child_signals();
    setpgid(0, 0);
    /* Join the attempt's cgroups first: whatever the job then does to its group, session or
     * environment, the engine finds (and ends) every process it makes there. */
    child_stage = 3;
    for (const char *c = cgroups; c < cgroups + cgroups_len; c += strlen(c) + 1) {
        int fd = open(c, O_WRONLY | O_CLOEXEC);
        if (fd < 0) goto fail;
        if (write(fd, "0", 1) != 1) {
            close(fd);
            goto fail;
        }
        close(fd);
    }
    child_stage = 1;
    if (chdir(workdir) < 0) goto fail;
    child_stage = 2;
    if (dup2(devnull_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) goto fail;
#ifdef SYS_close_range
    /* Everything of ours is O_CLOEXEC anyway; this also drops stray inherited fds. */
    syscall(SYS_close_range, 3u, ~0u, 0u);
#endif
    if (candidates == NULL) {
        execve(exec_path, argv, env);
        goto fail;
    }
    int saw_eacces = 0, last = ENOENT;
    for (size_t i = 0; candidates[i]; i++) {
        execve(candidates[i], argv, env);
        last = errno;
        if (errno == EACCES) saw_eacces = 1;
        else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG &&
                 errno != ESTALE && errno != ENODEV && errno != ETIMEDOUT)
            break;
    }
    errno = saw_eacces ? EACCES : last;
fail:
    child_errno = errno ? errno : ENOEXEC;
    _exit(127);
}

/* vfork() lives in its own small frame, so no local of handle_launch is live
 * across the "returns twice" point (where the compiler may not keep it intact). */
static pid_t __attribute__((noinline)) spawn_child(const char *workdir, int log_fd, char **argv, char **env,
                                                   const char *program, char **candidates,
                                                   const char *cgroups, size_t cgroups_len) {
    pid_t pid = vfork();
    if (pid == 0) child_exec(workdir, log_fd, argv, env, program, candidates, cgroups, cgroups_len);
    return pid;
}

/* ---- warm launches (see the top of this file) ---------------------------- */

typedef struct {
    unsigned char *data;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 256;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_u32(buf_t *b, uint32_t v) {
    unsigned char x[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    buf_put(b, x, 4);
}

static void buf_str(buf_t *b, const char *s, size_t len) {
    buf_u32(b, (uint32_t)len);
    buf_put(b, s, len);
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads exactly `len` bytes within `ms`; 0 on EOF, error or timeout. */
static int read_full(int fd, unsigned char *out, size_t len, int ms) {
    int64_t deadline = now_ms() + ms;
    size_t got = 0;
    while (got < len) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) return 0;
        ssize_t n = read(fd, out + got, len - got);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return 0;
        got += (size_t)n;
    }
    return 1;
}

/* The launcher numbered n if it is ready (reading its READY if that has come); else NULL. */
static launcher_t *ready_launcher(uint32_t n) {
    if (n == 0 || n > MAX_LAUNCHERS) return NULL;
    launcher_t *l = &launchers[n];
    if (l->fd < 0) return NULL;
    if (!l->ready) {
        unsigned char hello[5];
        ssize_t got = recv(l->fd, hello, sizeof hello, MSG_DONTWAIT | MSG_PEEK);
        if (got == 0) launcher_gone(l, 0); /* it exited (a preload failed): plain launches from now on */
        if (got < (ssize_t)sizeof hello) return NULL;
        if (recv(l->fd, hello, sizeof hello, 0) != (ssize_t)sizeof hello || get_u32(hello) != 1 || hello[4] != 0) {
            fprintf(stderr, "conveyor-spawner: warm launcher %u sent no READY; not used\n", n);
            launcher_gone(l, 1);
            return NULL;
        }
        l->ready = 1;
    }
    return l;
}

/* Hands an attempt to a ready launcher. Returns 1 when it started (STARTED emitted), 0 when
 * it failed to start (FAILED emitted), -1 when nothing was sent (the caller forks and execs). */
static int warm_launch(launcher_t *l, uint64_t id, const char *workdir, size_t workdir_len, const char *log_path,
                       size_t log_len, const char *cgroups, size_t cgroups_len, char **argv, uint32_t argc,
                       char **env) {
    buf_t b = {NULL, 0, 0};
    buf_u32(&b, 0); /* the length, filled in below */
    unsigned char idb[8];
    for (int i = 0; i < 8; i++) idb[i] = (unsigned char)(id >> (8 * i));
    buf_put(&b, idb, 8);
    buf_str(&b, workdir, workdir_len);
    buf_str(&b, log_path, log_len);
    buf_str(&b, cgroups, cgroups_len);
    buf_u32(&b, argc);
    for (uint32_t i = 0; i < argc; i++) buf_str(&b, argv[i], strlen(argv[i]));
    uint32_t envc = 0;
    while (env[envc]) envc++;
    buf_u32(&b, envc);
    for (uint32_t i = 0; i < envc; i++) buf_str(&b, env[i], strlen(env[i]));
    uint32_t body = (uint32_t)(b.len - 4);
    for (int i = 0; i < 4; i++) b.data[i] = (unsigned char)(body >> (8 * i));
    size_t sent = 0;
    while (sent < b.len) {
        ssize_t n = send(l->fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        sent += (size_t)n;
    }
    free(b.data);
    if (sent == 0) { /* it is gone and got nothing: an ordinary launch instead */
        launcher_gone(l, 1);
        return -1;
    }
    unsigned char answer[4 + 1 + 8 + 4 + 1 + 4];
    if (sent < b.len || !read_full(l->fd, answer, sizeof answer, LAUNCHER_ANSWER_MS) ||
        get_u32(answer) != sizeof answer - 4 || answer[4] != 1 || body_id(answer + 5) != id) {
        /* It may have started the attempt: never start it a second time. */
        launcher_gone(l, 1);
        emit_failed(id, NULL, 0, "the warm launcher did not answer");
        return 0;
    }
    pid_t pid = (pid_t)get_u32(answer + 13);
    unsigned stage = answer[17];
    int err = (int)get_u32(answer + 18);
    if (stage == 0 && pid > 0) {
        add_attempt(id, pid);
        emit_started(id, pid);
        return 1;
    }
    const char *detail = strerror(err ? err : EIO);
    if (stage == 1) emit_failed(id, workdir, workdir_len, detail);
    else if (stage == 3) emit_failed(id, "joining the attempt's cgroup", 28, detail);
    else if (stage == 4) emit_failed(id, log_path, log_len, detail);
    else emit_failed(id, "fork", 4, detail);
    return 0;
}

static void handle_launcher(reader_t *r) {
    uint32_t n = rd_u32(r), argc = 0, envc = 0;
    char *exec_path = rd_str(r, NULL);
    char **argv = rd_strings(r, &argc, 1, "LAUNCHER");
    char **extra = rd_strings(r, &envc, 0, "LAUNCHER");
    int sv[2] = {-1, -1};
    if (n >= 1 && n <= MAX_LAUNCHERS && launchers[n].fd < 0 && launchers[n].pid == 0 && !quitting &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        char **env = merge_env(extra, envc);
        pid_t pid = fork();
        if (pid == 0) {
            restore_child_signals();
            setpgid(0, 0); /* a terminal's Ctrl-C is for the engine */
            if (dup2(devnull_fd, 0) < 0 || dup2(devnull_fd, 1) < 0 || dup2(sv[1], 3) < 0) _exit(127);
            if (sv[1] == 3) fcntl(3, F_SETFD, 0); /* dup2 onto itself keeps close-on-exec */
#ifdef SYS_close_range
            syscall(SYS_close_range, 4u, ~0u, 0u);
#endif
            execve(exec_path, argv, env);
            fprintf(stderr, "conveyor-spawner: warm launcher %s: %s\n", exec_path, strerror(errno));
            _exit(127);
        }
        close(sv[1]);
        if (pid < 0) {
            close(sv[0]);
        } else {
            launchers[n].pid = pid;
            launchers[n].fd = sv[0];
            launchers[n].ready = 0;
        }
        free(env);
    }
    free_strings(argv, argc);
    free_strings(extra, envc);
    free(exec_path);
}

static void handle_launch(reader_t *r) {
    uint64_t id = rd_u64(r);
    uint32_t launcher = rd_u32(r);
    size_t log_len = 0, workdir_len = 0, exec_len = 0, spare_len = 0, cgroups_len = 0;
    char *workdir = rd_str(r, &workdir_len);
    char *log_path = rd_str(r, &log_len);
    char *spare = rd_str(r, &spare_len);
    char *cgroups = rd_str(r, &cgroups_len);
    char *exec_path = rd_str(r, &exec_len);
    uint32_t argc = 0, envc = 0;
    char **argv = rd_strings(r, &argc, 1, "LAUNCH");
    char **extra = rd_strings(r, &envc, 0, "LAUNCH");

    const char *failed = NULL;
    char **env = NULL, **candidates = NULL;
    int log_fd = -1, started = 0;
    if (spare_len) claim_spare(spare, log_path);
    if (make_dirs(workdir, &failed) < 0 || (log_fd = open_log(log_path, &failed)) < 0) {
        emit_failed(id, failed, strlen(failed), strerror(errno));
        goto done;
    }
    env = merge_env(extra, envc);
    if (exec_len == 0 && strchr(argv[0], '/') == NULL) candidates = path_candidates(argv[0], env);
    const char *program = exec_len ? exec_path : argv[0];

    child_errno = 0;
    child_stage = 0;
    if (cgroups)
        for (size_t i = 0; i < cgroups_len; i++)
            if (cgroups[i] == '\n') cgroups[i] = '\0';
    launcher_t *warm = ready_launcher(launcher);
    if (warm != NULL) {
        close(log_fd); /* made, so the trace exists before the attempt starts; the attempt opens it */
        log_fd = -1;
        int outcome = warm_launch(warm, id, workdir, workdir_len, log_path, log_len, cgroups ? cgroups : "",
                                  cgroups_len, argv, argc, env);
        if (outcome >= 0) {
            started = outcome;
            goto done;
        }
        if ((log_fd = open_log(log_path, &failed)) < 0) {
            emit_failed(id, failed, strlen(failed), strerror(errno));
            goto done;
        }
    }
    pid_t pid = spawn_child(workdir, log_fd, argv, env, program, candidates, cgroups ? cgroups : "", cgroups_len);
    started = pid > 0 && child_errno == 0;
    if (pid < 0) {
        emit_failed(id, "fork", 4, strerror(errno));
    } else if (child_errno != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (child_stage == 3) emit_failed(id, "joining the attempt's cgroup", 28, strerror(child_errno));
        else if (child_stage == 1) emit_failed(id, workdir, workdir_len, strerror(child_errno));
        else emit_failed(id, program, strlen(program), strerror(child_errno));
    } else {
        add_attempt(id, pid);
        emit_started(id, pid);
    }

done:
    if (log_fd >= 0) close(log_fd);
    if (candidates)
        for (size_t i = 0; candidates[i]; i++) free(candidates[i]);
    free(candidates);
    free(env);
    free_strings(extra, envc);
    free_strings(argv, argc);
    free(workdir);
    free(log_path);
    free(spare);
    free(cgroups);
    free(exec_path);
    if (!started) release_slot(id); /* a failed start frees its slot at once */
}

static void launch_body(const unsigned char *body, size_t len) {
    reader_t r = {body, body + len, 0};
    handle_launch(&r);
}

static void handle_arm(reader_t *r) {
    uint64_t after = rd_u64(r);
    size_t len = (size_t)(r->end - r->p);
    if (r->bad || len < 8) {
        fprintf(stderr, "conveyor-spawner: malformed ARM request\n");
        exit(2);
    }
    if (find_by_id(after) == NULL && !is_armed_id(after)) { /* it has ended already: its slot is free */
        launch_body(r->p, len);
        return;
    }
    if (find_armed_after(after) != NULL) {
        emit_failed(body_id(r->p), NULL, 0, "the spawner already has a launch armed on that attempt");
        return;
    }
    if (n_armed == cap_armed) {
        cap_armed = cap_armed ? cap_armed * 2 : 16;
        armed = xrealloc(armed, cap_armed * sizeof *armed);
    }
    armed[n_armed].after = after;
    armed[n_armed].body = xrealloc(NULL, len);
    memcpy(armed[n_armed].body, r->p, len);
    armed[n_armed].len = len;
    n_armed++;
}

static void handle_stop(uint64_t id, uint32_t grace_ms) {
    attempt_t *a = find_by_id(id);
    if (a == NULL) return; /* already ended: a no-op */
    if (grace_ms == 0) {
        signal_group(a->pid, SIGKILL);
        return;
    }
    if (!a->stopping) signal_group(a->pid, SIGTERM);
    a->stopping = 1;
    int64_t at = now_ms() + grace_ms;
    if (a->kill_at_ms == 0 || at < a->kill_at_ms) a->kill_at_ms = at;
}

/* Handles one request body; returns nothing, exits on protocol errors. */
static void handle_request(const unsigned char *body, size_t len) {
    reader_t r = {body + 1, body + len, 0};
    if (len < 1) {
        fprintf(stderr, "conveyor-spawner: empty request\n");
        exit(2);
    }
    switch (body[0]) {
    case REQ_LAUNCH:
        if (quitting) {
            emit_failed(rd_u64(&r), NULL, 0, "the spawner is shutting down");
            return;
        }
        handle_launch(&r);
        return;
    case REQ_STOP: {
        uint64_t id = rd_u64(&r);
        uint32_t grace = rd_u32(&r);
        if (!r.bad) handle_stop(id, grace);
        return;
    }
    case REQ_KILL: {
        uint64_t id = rd_u64(&r);
        attempt_t *a = r.bad ? NULL : find_by_id(id);
        if (a) signal_group(a->pid, SIGKILL);
        return;
    }
    case REQ_ARM:
        if (len < 1 + 8 + 8) {
            fprintf(stderr, "conveyor-spawner: malformed ARM request\n");
            exit(2);
        }
        if (quitting) {
            emit_failed(body_id(r.p + 8), NULL, 0, "the spawner is shutting down");
            return;
        }
        handle_arm(&r);
        return;
    case REQ_DISARM: {
        uint64_t after = rd_u64(&r);
        if (!r.bad) drop_chain(after);
        return;
    }
    case REQ_QUIT:
        quitting = 1;
        kill_all();
        return;
    case REQ_LAUNCHER:
        handle_launcher(&r);
        return;
    case REQ_FAIL: {
        uint64_t id = rd_u64(&r);
        size_t msg_len = 0;
        char *msg = rd_str(&r, &msg_len);
        if (!r.bad) emit_failed(id, NULL, 0, msg);
        free(msg);
        return;
    }
    default:
        fprintf(stderr, "conveyor-spawner: unknown request type %u\n", body[0]);
        exit(2);
    }
}

/* ---- main loop --------------------------------------------------------- */

int main(void) {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &child_mask) < 0) die("sigprocmask");
    int sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sig_fd < 0) die("signalfd");
    /* The engine owns shutdown (QUIT / EOF); a terminal's Ctrl-C is for the engine. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull_fd < 0) die("open /dev/null");
    /* Attempts a warm launcher double-forks are reparented to us, to be reaped like the rest. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("prctl");
    for (int n = 0; n <= MAX_LAUNCHERS; n++) launchers[n].fd = -1;
    if (fcntl(STDIN_FILENO, F_SETFD, FD_CLOEXEC) < 0 || fcntl(STDOUT_FILENO, F_SETFD, FD_CLOEXEC) < 0)
        die("fcntl");

    put_u32(1 + 4);
    put_u8(EV_HELLO);
    put_u32(PROTOCOL_VERSION);
    flush_out();

    unsigned char *in_buf = NULL;
    size_t in_len = 0, in_cap = 0;
    for (;;) {
        flush_out();
        if (quitting && n_attempts == 0) break;
        if (!stdin_open && !quitting) break; /* engine died: leave attempts to kill_orphans */
        int64_t next = 0;
        for (size_t i = 0; i < n_attempts; i++)
            if (attempts[i].kill_at_ms && (next == 0 || attempts[i].kill_at_ms < next)) next = attempts[i].kill_at_ms;
        int timeout = -1;
        if (next) {
            int64_t left = next - now_ms();
            timeout = left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd fds[2] = {{sig_fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int rc = poll(fds, stdin_open ? 2 : 1, timeout);
        if (rc < 0 && errno != EINTR) die("poll");
        if (rc > 0 && fds[0].revents) {
            struct signalfd_siginfo si;
            while (read(sig_fd, &si, sizeof si) > 0) {
            }
            reap_children();
        }
        if (next && now_ms() >= next) {
            int64_t now = now_ms();
            for (size_t i = 0; i < n_attempts; i++) {
                if (attempts[i].kill_at_ms && attempts[i].kill_at_ms <= now) {
                    attempts[i].kill_at_ms = 0;
                    signal_group(attempts[i].pid, SIGKILL);
                }
            }
        }
        if (rc > 0 && stdin_open && fds[1].revents) {
            if (in_cap - in_len < 65536) {
                in_cap = in_cap * 2 + 65536;
                in_buf = xrealloc(in_buf, in_cap);
            }
            ssize_t n = read(STDIN_FILENO, in_buf + in_len, in_cap - in_len);
            if (n < 0 && errno != EINTR && errno != EAGAIN) die("read");
            if (n == 0) stdin_open = 0;
            if (n > 0) in_len += (size_t)n;
            size_t pos = 0;
            while (in_len - pos >= 4) {
                const unsigned char *h = in_buf + pos;
                uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
                if (len > MAX_RECORD) {
                    fprintf(stderr, "conveyor-spawner: request of %u bytes is too large\n", len);
                    exit(2);
                }
                if (in_len - pos - 4 < len) break;
                handle_request(in_buf + pos + 4, len);
                pos += 4 + (size_t)len;
                /* Reap between requests too, so a burst of launches cannot starve exits. */
                reap_children();
            }
            memmove(in_buf, in_buf + pos, in_len - pos);
            in_len -= pos;
        }
    }
    flush_out();
    for (int n = 1; n <= MAX_LAUNCHERS; n++) launcher_gone(&launchers[n], 0); /* EOF: they exit */
    free(in_buf);
    free(out_buf);
    free(attempts);
    free(armed);
    return 0;
}
