// bulkrcu-bench: the process runner (see runner.h).
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "measure.h"
#include "pool.h"
#include "workloads.h"

extern char** environ;

namespace bench {

std::string alloc_library(const std::string& alloc) {
  if (alloc == "jemalloc") return "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
  if (alloc == "tcmalloc") return "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4";
  if (alloc == "mimalloc") return "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2";
  return "";
}

namespace {

// Busy CPU time of the whole machine so far (the "cpu" line of /proc/stat: user, nice, system,
// irq, softirq, steal; not idle or iowait), in seconds.
double machine_busy_s() {
  FILE* f = fopen("/proc/stat", "re");
  if (!f) return -1;
  unsigned long long v[8] = {};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                 &v[6], &v[7]);
  fclose(f);
  if (n < 8) return -1;
  const unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double self_cpu_s() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

}  // namespace

void parse_result(const std::string& text, CaseResult* r) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string kind, name;
    l >> kind >> name;
    if (kind == "m") {
      double v;
      if (l >> v) r->metrics[name] = v;
    } else if (kind == "i") {
      std::string rest;
      std::getline(l, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      r->info[name] = rest;
    } else if (kind == "s") {
      std::vector<std::string> cells;
      std::string c;
      while (l >> c) cells.push_back(c);
      r->series[name].push_back(std::move(cells));
    } else if (kind == "h") {
      double lo;
      std::uint64_t n;
      if (l >> lo >> n) r->hists[name].emplace_back(lo, n);
    }
  }
}

CaseResult run_case(const std::map<std::string, std::string>& params, const std::string& alloc,
                    int timeout_s) {
  CaseResult r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + strerror(errno);
    return r;
  }
  std::vector<std::string> args = {"bulkrcu-bench", "--result-fd", "3", "--child"};
  for (const auto& [k, v] : params) args.push_back(k + "=" + v);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env;
  std::string preload = alloc_library(alloc);
  for (char** e = environ; *e; ++e) {
    if (!preload.empty() && strncmp(*e, "LD_PRELOAD=", 11) == 0) continue;
    env.emplace_back(*e);
  }
  if (!preload.empty()) {
    const char* old = getenv("LD_PRELOAD");
    env.push_back("LD_PRELOAD=" + preload + (old && *old ? std::string(":") + old : std::string()));
  }
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 3);  // dup2 clears O_CLOEXEC on the copy
  pid_t pid;
  const double busy0 = machine_busy_s(), self0 = self_cpu_s();
  const std::uint64_t t0 = now_ns();
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    r.error = std::string("posix_spawn: ") + strerror(rc);
    return r;
  }
  std::string text;
  bool timed_out = false;
  char buf[65536];
  for (;;) {
    std::int64_t left_ms =
        static_cast<std::int64_t>(timeout_s) * 1000 - static_cast<std::int64_t>((now_ns() - t0) / 1000000);
    if (left_ms <= 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left_ms));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;  // the deadline check above fires
    ssize_t got = read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<std::size_t>(got));
  }
  close(fds[0]);
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.seconds = (now_ns() - t0) * 1e-9;
  r.child_cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                  static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  const double busy1 = machine_busy_s(), self1 = self_cpu_s();
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (busy0 >= 0 && busy1 >= 0 && r.seconds > 0 && ncpu > 0) {
    // /proc/stat counts in clock ticks (10 ms): a short case reads a few ticks high or low.
    const double other = busy1 - busy0 - r.child_cpu_s - (self1 - self0);
    r.other_cpu_pct = std::max(0.0, 100.0 * other / (r.seconds * static_cast<double>(ncpu)));
  }
  parse_result(text, &r);
  if (timed_out)
    r.error = "timed out after " + std::to_string(timeout_s) + " s (killed)";
  else if (WIFSIGNALED(status))
    r.error = std::string("killed by signal ") + strsignal(WTERMSIG(status));
  else if (WEXITSTATUS(status) != 0)
    r.error = "exit status " + std::to_string(WEXITSTATUS(status));
  else if (r.metrics.empty())
    r.error = "no result";
  else
    r.ok = true;
  return r;
}

int child_main(const Options& o) {
  Params p{o.child_params};
  const std::string part = p.str("part");
  ResultWriter out(o.result_fd);
  if (part == "pool") {
    pool_child(p, out);
    return 0;
  }
  const ImplEntry* e = find_impl(p.str("impl"));
  if (!e) {
    fprintf(stderr, "bulkrcu-bench: child: unknown implementation '%s'\n", p.str("impl").c_str());
    return 2;
  }
  ChildFn fn = part == "kfree_scale"      ? e->kfree_scale
               : part == "flood"          ? e->flood
               : part == "read_mostly"    ? e->read_mostly
               : part == "retire_latency" ? e->retire_latency
               : part == "sync_latency"   ? e->sync_latency
               : part == "scale_retire"   ? e->scale_retire
               : part == "scale_sync"     ? e->scale_sync
                                          : nullptr;
  if (!fn) {
    fprintf(stderr, "bulkrcu-bench: child: no workload part '%s' for '%s'\n", part.c_str(), e->name);
    return 2;
  }
  fn(p, out);
  return 0;
}

}  // namespace bench
