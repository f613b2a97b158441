// bulkrcu-bench: tables, CSV files and plots (see report.h).
#include "report.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "runner.h"

namespace bench {
namespace {

std::vector<double> values(const CaseRuns& r, const std::string& key) {
  std::vector<double> v;
  for (const auto& run : r.runs) {
    if (!run.ok) continue;
    auto it = run.metrics.find(key);
    if (it != run.metrics.end()) v.push_back(it->second);
  }
  return v;
}

const CaseRuns* find_row(const std::vector<CaseRuns>& runs, const std::string& variant,
                         const std::string& impl) {
  for (const auto& r : runs)
    if (r.c->variant == variant && r.c->impl == impl) return &r;
  return nullptr;
}

std::string ratio_text(double v, double ref) {
  if (!(ref > 0) || !std::isfinite(v)) return "-";
  char buf[32];
  double x = v / ref;
  snprintf(buf, sizeof buf, x >= 100 ? "%.0fx" : x >= 10 ? "%.1fx" : x >= 0.1 ? "%.2fx" : "%.2gx", x);
  return buf;
}

// Prints rows as an aligned table: first column left-aligned, the others right-aligned.
void print_rows(const std::vector<std::vector<std::string>>& rows, FILE* out) {
  std::vector<std::size_t> width;
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line = "  ";
    for (std::size_t i = 0; i < r.size(); ++i) {
      std::string pad(width[i] - r[i].size(), ' ');
      line += i == 0 ? r[i] + pad : pad + r[i];
      line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    fprintf(out, "%s\n", line.c_str());
  }
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

}  // namespace

std::string fmt(double v) {
  char buf[64];
  double a = std::fabs(v);
  if (!std::isfinite(v))
    snprintf(buf, sizeof buf, "-");
  else if (a >= 1e7)
    snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (a >= 1e5)
    snprintf(buf, sizeof buf, "%.0fk", v / 1e3);
  else if (a >= 1e3 || (a >= 10 && v == std::floor(v)))
    snprintf(buf, sizeof buf, "%.0f", v);
  else if (a >= 100)
    snprintf(buf, sizeof buf, "%.1f", v);
  else if (a >= 10 || a == 0)
    snprintf(buf, sizeof buf, a == 0 ? "0" : "%.2f", v);
  else
    snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

bool stat_of(const CaseRuns& r, const std::string& key, Stat* s) {
  std::vector<double> v = values(r, key);
  if (v.empty()) return false;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  s->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s->median_ran = n % 2 == 1;
  s->min = v.front();
  s->max = v.back();
  s->n = static_cast<int>(n);
  return true;
}

const CaseResult* last_ok(const CaseRuns& r) {
  for (auto it = r.runs.rbegin(); it != r.runs.rend(); ++it)
    if (it->ok) return &*it;
  return nullptr;
}

std::string row_name(const Case& c) { return c.label.empty() ? c.impl : c.label; }

namespace {

std::string fmt_int(double v) {
  if (std::fabs(v) >= 1e5) return fmt(v);
  char buf[32];
  snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

// One cell: the median when it is a value that ran (an odd number of runs), else every value
// in run order ("a / b"): a midpoint of two runs never happened.
std::string cell(const CaseRuns& r, const std::string& key, bool integer, const Stat& s) {
  auto f = [&](double v) { return integer ? fmt_int(v) : fmt(v); };
  if (s.median_ran) return f(s.median);
  std::string out;
  for (double v : values(r, key)) out += (out.empty() ? "" : " / ") + f(v);
  return out;
}

}  // namespace

std::string table_text(const WorkloadDef& w, const std::vector<CaseRuns>& runs) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* out = open_memstream(&buf, &len);
  fprintf(out, "\n== %s\n", w.title.c_str());
  for (const auto& n : w.notes) fprintf(out, "   %s\n", n.c_str());
  std::set<std::string> allocs;
  std::set<int> reps;
  int failed = 0;
  for (const auto& r : runs) {
    reps.insert(static_cast<int>(r.runs.size()));
    for (const auto& run : r.runs) {
      if (!run.ok) ++failed;
      auto it = run.info.find("allocator");
      if (it != run.info.end()) allocs.insert(it->second);
    }
  }
  std::string a, rp;
  for (const auto& s : allocs) a += (a.empty() ? "" : "; ") + s;
  for (int n : reps) rp += (rp.empty() ? "" : ", ") + std::to_string(n);
  const bool all_odd = std::all_of(reps.begin(), reps.end(), [](int n) { return n % 2 == 1; });
  fprintf(out, "   malloc served by: %s. Repetitions: %s; %s\n", a.empty() ? "?" : a.c_str(), rp.c_str(),
          all_odd ? "medians, [min-max], '!': max > 2x min; ratios: median / the named row's median."
                  : "an even number of runs: every value is shown (a / b), in run order.");
  fprintf(out,
          "   other CPU %%: CPU time other processes used during the runs, in %% of the machine, the "
          "highest run; '!': above %.0f%% (noisy).\n",
          kNoisyPct);
  if (failed) fprintf(out, "   %d run(s) FAILED and are left out (see stderr).\n", failed);

  std::vector<std::string> variants;
  for (const auto& r : runs)
    if (std::find(variants.begin(), variants.end(), r.c->variant) == variants.end())
      variants.push_back(r.c->variant);
  const bool is_retire_latency = w.file == "latency_retire";
  for (const auto& variant : variants) {
    if (!variant.empty())
      fprintf(out, "\n  -- %s\n", variant.c_str());
    else
      fprintf(out, "\n");
    const CaseRuns* floor = find_row(runs, variant, w.floor);
    const CaseRuns* ref = find_row(runs, variant, w.ref);
    const std::string ref_name = ref ? row_name(*ref->c) : w.ref;
    bool any_floor = false, any_ref = false;  // the workload has those rows at all
    for (const auto& r : runs) {
      any_floor |= r.c->impl == w.floor;
      any_ref |= r.c->impl == w.ref;
    }
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> head = {"impl", w.primary_header, "[min-max]"};
    if (any_floor) head.push_back("/" + w.floor);
    if (any_ref) head.push_back("/" + ref_name);
    for (const auto& c : w.columns)
      head.push_back(c.ratio && any_ref ? c.header + " (/" + ref_name + ")" : c.header);
    head.push_back("other CPU %");
    rows.push_back(head);
    for (const auto& r : runs) {
      if (r.c->variant != variant) continue;
      std::vector<std::string> row = {row_name(*r.c)};
      Stat timer{};
      const bool have_timer = is_retire_latency && stat_of(r, "timer_ns", &timer);
      auto under_timer = [&](const std::string& key, double v) {
        return have_timer && key != "timer_ns" && key != "mean_ns" && key.size() > 3 &&
               key.compare(key.size() - 3, 3, "_ns") == 0 && v <= 1.5 * timer.median;
      };
      Stat s, rs;
      if (stat_of(r, w.primary, &s)) {
        row.push_back(under_timer(w.primary, s.median) ? "<=timer"
                                                       : cell(r, w.primary, w.integer_primary, s));
        std::string spread = "[";  // built step by step: gcc 12 misreports "[" + a + ... (-Wrestrict)
        spread += fmt(s.min);
        spread += '-';
        spread += fmt(s.max);
        spread += ']';
        if (s.min > 0 && s.max > 2 * s.min) spread += " !";
        row.push_back(s.n >= 2 ? spread : "");
        if (any_floor)
          row.push_back(floor && stat_of(*floor, w.primary, &rs) ? ratio_text(s.median, rs.median) : "-");
        if (any_ref)
          row.push_back(ref && stat_of(*ref, w.primary, &rs) ? ratio_text(s.median, rs.median) : "-");
      } else {
        row.insert(row.end(), {"FAILED", ""});
        if (any_floor) row.push_back("");
        if (any_ref) row.push_back("");
      }
      for (const auto& c : w.columns) {
        if (!stat_of(r, c.key, &s)) {
          row.push_back("n/a");
          continue;
        }
        std::string text = under_timer(c.key, s.median) ? "<=timer" : cell(r, c.key, c.integer, s);
        if (c.ratio && ref && stat_of(*ref, c.key, &rs)) text += " (" + ratio_text(s.median, rs.median) + ")";
        row.push_back(text);
      }
      double worst = -1;
      for (const auto& run : r.runs) worst = std::max(worst, run.other_cpu_pct);
      char nb[32];
      snprintf(nb, sizeof nb, worst < 0 ? "?" : "%.0f%s", worst, worst > kNoisyPct ? " !" : "");
      row.push_back(nb);
      rows.push_back(row);
    }
    print_rows(rows, out);
  }
  fclose(out);
  std::string text(buf, len);
  free(buf);
  return text;
}

void write_report(const Report& r, const std::string& dir) {
  std::ofstream f(dir + "/report.md");
  f << "# bulkrcu-bench report\n\n"
    << "| | |\n|---|---|\n"
    << "| command | `" << r.command << "` |\n"
    << "| commit | " << r.commit << " |\n"
    << "| versions | " << r.versions << " |\n"
    << "| machine | " << r.machine << " |\n"
    << "| suite | " << r.suite << " |\n"
    << "| load average | " << r.load_start << " at the start, " << r.load_end << " at the end |\n"
    << "| wall time | " << r.elapsed << " |\n\n";
  if (!r.warnings.empty()) {
    f << "## Warnings\n\n";
    for (const auto& w : r.warnings) f << "- " << w << "\n";
    f << "\n";
  }
  f << "## Tables\n\n" << r.summary << ". Each case ran in its own process; repetitions interleaved.\n";
  for (const auto& t : r.tables) f << "\n```text" << t << "```\n";
  if (!r.pngs.empty()) {
    f << "\n## Plots\n\n";
    for (const auto& p : r.pngs) {
      std::string name = p.substr(p.find_last_of('/') + 1);
      f << "### " << name << "\n\n![" << name << "](" << name << ")\n\n";
    }
  }
  f << "\nThe CSV files beside this report hold every run (one row each), the series and the "
       "histograms.\n";
}

std::vector<std::string> write_csv(const WorkloadDef& w, const std::vector<CaseRuns>& runs,
                                   const std::string& dir) {
  std::vector<std::string> files;
  // Every metric key any run reported, in a stable order.
  std::set<std::string> keys;
  for (const auto& r : runs)
    for (const auto& run : r.runs)
      for (const auto& [k, v] : run.metrics) keys.insert(k);
  std::string path = dir + "/" + w.file + ".csv";
  {
    std::ofstream f(path);
    f << "workload,variant,impl,rep,ok,allocator,child_s,child_cpu_s,other_cpu_pct,attempts";
    for (const auto& k : keys) f << "," << k;
    f << "\n";
    for (const auto& r : runs) {
      for (std::size_t i = 0; i < r.runs.size(); ++i) {
        const CaseResult& run = r.runs[i];
        auto al = run.info.find("allocator");
        f << csv_escape(w.name) << "," << csv_escape(r.c->variant) << "," << r.c->impl << "," << i + 1 << ","
          << (run.ok ? 1 : 0) << "," << csv_escape(al == run.info.end() ? "" : al->second) << ","
          << run.seconds << "," << run.child_cpu_s << "," << run.other_cpu_pct << "," << run.attempts;
        for (const auto& k : keys) {
          auto it = run.metrics.find(k);
          f << ",";
          if (it != run.metrics.end()) f << it->second;
        }
        f << "\n";
      }
    }
    files.push_back(path);
  }
  // Series (flood): the last successful run of each case.
  bool any_series = false;
  for (const auto& r : runs)
    if (const CaseResult* run = last_ok(r); run && run->series.count("series")) any_series = true;
  if (any_series) {
    std::string sp = dir + "/" + w.file + "_series.csv";
    std::ofstream f(sp);
    bool header = false;
    for (const auto& r : runs) {
      const CaseResult* run = last_ok(r);
      if (!run || !run->series.count("series")) continue;
      const auto& rows = run->series.at("series");
      if (rows.empty()) continue;
      if (!header) {
        f << "variant,impl";
        for (const auto& c : rows[0]) f << "," << c;
        f << "\n";
        header = true;
      }
      for (std::size_t i = 1; i < rows.size(); ++i) {
        f << csv_escape(r.c->variant) << "," << r.c->impl;
        for (const auto& c : rows[i]) f << "," << c;
        f << "\n";
      }
    }
    files.push_back(sp);
  }
  // Histograms (latency): the last successful run of each case.
  bool any_hist = false;
  for (const auto& r : runs)
    if (const CaseResult* run = last_ok(r); run && !run->hists.empty()) any_hist = true;
  if (any_hist) {
    std::string hp = dir + "/" + w.file + "_hist.csv";
    std::ofstream f(hp);
    f << "variant,impl,histogram,lower_ns,count\n";
    for (const auto& r : runs) {
      const CaseResult* run = last_ok(r);
      if (!run) continue;
      for (const auto& [name, buckets] : run->hists)
        for (const auto& [lo, n] : buckets)
          f << csv_escape(r.c->variant) << "," << r.c->impl << "," << name << "," << lo << "," << n << "\n";
    }
    files.push_back(hp);
  }
  return files;
}

}  // namespace bench
