// bulkrcu-bench: measurement helpers (see measure.h).
#include "measure.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace bench {

std::uint64_t rss_bytes() {
  // Read with plain syscalls: stdio would malloc, and the sampler must not disturb the heap
  // being measured more than necessary.
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  unsigned long size = 0, resident = 0;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

std::uint64_t peak_rss_bytes() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;
}

std::string malloc_provider() {
  std::string lib = "?";
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info;
  if (sym && dladdr(sym, &info) && info.dli_fname) lib = info.dli_fname;
  std::string name;
  if (lib.find("jemalloc") != std::string::npos && dlsym(RTLD_DEFAULT, "mallctl"))
    name = "jemalloc";
  else if (lib.find("tcmalloc") != std::string::npos && dlsym(RTLD_DEFAULT, "tc_malloc"))
    name = "tcmalloc";
  else if (lib.find("mimalloc") != std::string::npos && dlsym(RTLD_DEFAULT, "mi_version"))
    name = "mimalloc";
  else if (lib.find("libc.so") != std::string::npos)
    name = "glibc";
  else
    name = "unknown";
  return name + " (" + lib + ")";
}

double ns_per_tick() {
  static double cached = [] {
    std::uint64_t t0 = now_ns(), c0 = ticks();
    while (now_ns() - t0 < 20'000'000) {
    }
    std::uint64_t t1 = now_ns(), c1 = ticks();
    return static_cast<double>(t1 - t0) / static_cast<double>(c1 - c0);
  }();
  return cached;
}

std::uint64_t Histogram::quantile(double q) const {
  if (n_ == 0) return 0;
  std::uint64_t rank = static_cast<std::uint64_t>(q * static_cast<double>(n_ - 1)) + 1;
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return upper(i) < max_ ? upper(i) : max_;
  }
  return max_;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> Histogram::buckets() const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (unsigned i = 0; i < counts_.size(); ++i)
    if (counts_[i]) out.emplace_back(lower(i), counts_[i]);
  return out;
}

ResultWriter::ResultWriter(int fd) {
  f_ = fdopen(fd, "w");
  if (!f_) {
    perror("bulkrcu-bench: fdopen(result fd)");
    std::exit(1);
  }
}
ResultWriter::~ResultWriter() { fclose(f_); }

void ResultWriter::metric(const std::string& key, double v) { fprintf(f_, "m %s %.9g\n", key.c_str(), v); }

void ResultWriter::info(const std::string& key, const std::string& text) {
  std::string t = text;
  for (char& c : t)
    if (c == '\n') c = ' ';
  fprintf(f_, "i %s %s\n", key.c_str(), t.c_str());
}

void ResultWriter::row(const std::string& series, const std::vector<std::string>& cells) {
  fprintf(f_, "s %s", series.c_str());
  for (const auto& c : cells) fprintf(f_, " %s", c.c_str());
  fputc('\n', f_);
}

void ResultWriter::row(const std::string& series, const std::vector<double>& cells) {
  fprintf(f_, "s %s", series.c_str());
  for (double c : cells) fprintf(f_, " %.9g", c);
  fputc('\n', f_);
}

void ResultWriter::histogram(const std::string& name, const Histogram& h, double scale) {
  for (auto [lo, n] : h.buckets())
    fprintf(f_, "h %s %.6g %llu\n", name.c_str(), static_cast<double>(lo) * scale,
            static_cast<unsigned long long>(n));
}

}  // namespace bench
