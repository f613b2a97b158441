// bulkrcu-bench: the plots (gnuplot). One script, plots.gp, with a data file per plot in
// plot-data/, so that a user can change a plot and run `gnuplot plots.gp` again.
//
// Conventions: colours by family (bulkrcu's forms in blues and greens, liburcu in oranges, the
// floor in grey, other baselines in purple), each implementation the same colour in every
// plot; a log scale when the values span more than 30x; human tick labels (1k, 10 us); time
// axes that end where the phase ends; a series that cannot be drawn is named in the legend.
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include "report.h"

namespace bench {
namespace {

std::string gp_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
  return o + "'";
}

// A string in a data file: double quotes (gnuplot's data files do not take single quotes).
std::string dq(std::string s) {
  std::replace(s.begin(), s.end(), '"', '\'');
  return "\"" + s + "\"";
}

enum class Family { kBulkrcu, kLiburcu, kFloor, kOther };

Family family_of(const std::string& impl) {
  if (impl == "free" || impl == "malloc") return Family::kFloor;
  if (impl.rfind("urcu_", 0) == 0 || impl.rfind("liburcu", 0) == 0) return Family::kLiburcu;
  if (impl == "mmap") return Family::kOther;
  return Family::kBulkrcu;
}

// One colour per implementation, the same in every plot.
std::string color_of(const std::string& impl) {
  static const std::map<std::string, std::string> c = {{"kvfree", "#08519c"},
                                                       {"kfree_head", "#3182bd"},
                                                       {"defer", "#6baed6"},
                                                       {"call", "#006d2c"},
                                                       {"rcu_retire", "#31a354"},
                                                       {"obj_retire", "#74c476"},
                                                       {"pool_lockless", "#08519c"},
                                                       {"pool_locked", "#6baed6"},
                                                       {"urcu_call_rcu", "#d94801"},
                                                       {"urcu_defer_rcu", "#fdae6b"},
                                                       {"free", "#444444"},
                                                       {"malloc", "#444444"},
                                                       {"mmap", "#984ea3"},
                                                       {"cache", "#00441b"},
                                                       {"cache_typesafe", "#a1d99b"},
                                                       {"call_bounded", "#238b45"},
                                                       {"rcu_retire_default", "#a1d99b"}};
  auto it = c.find(impl);
  if (it != c.end()) return it->second;
  switch (family_of(impl)) {
    case Family::kLiburcu:
      return "#d94801";
    case Family::kFloor:
      return "#444444";
    case Family::kOther:
      return "#984ea3";
    default:
      return "#006d2c";
  }
}

// Colour as the integer gnuplot's `lc rgb variable` reads from a data column.
long color_int(const std::string& impl) { return std::strtol(color_of(impl).c_str() + 1, nullptr, 16); }

// Dashes tell apart the members of one family in line plots.
std::string dash_of(const std::string& impl) {
  static const std::map<std::string, int> d = {
      {"kvfree", 1},     {"kfree_head", 2},     {"defer", 4},         {"call", 1},
      {"rcu_retire", 2}, {"obj_retire", 4},     {"urcu_call_rcu", 1}, {"urcu_defer_rcu", 2},
      {"cache", 3},      {"cache_typesafe", 5}, {"call_bounded", 3},  {"rcu_retire_default", 3}};
  auto it = d.find(impl);
  return std::to_string(it == d.end() ? 1 : it->second);
}

std::string style_of(const std::string& impl) {
  return "lc rgb '" + color_of(impl) + "' dt " + dash_of(impl);
}

// The legend entries naming the families, drawn as empty plots.
std::string family_keys(bool with_other) {
  std::string k =
      "NaN with boxes fs solid 0.7 lc rgb '#006d2c' title 'bulkrcu (blues, greens)', "
      "NaN with boxes fs solid 0.7 lc rgb '#d94801' title 'liburcu (oranges)', "
      "NaN with boxes fs solid 0.7 lc rgb '#444444' title 'floor (grey)'";
  if (with_other) k += ", NaN with boxes fs solid 0.7 lc rgb '#984ea3' title 'other baseline (purple)'";
  return k;
}

// y axis settings for values from lo to hi: a log scale when they span more than 30x.
std::string y_axis(double lo, double hi, const std::string& fmt_log, const std::string& fmt_lin) {
  std::string s;
  if (lo > 0 && hi / lo > 30) {
    s = "set logscale y\nset yrange [" + std::to_string(lo / 2) + ":" + std::to_string(hi * 2) + "]\n";
    s += "set format y " + gp_quote(fmt_log) + "\n";
  } else {
    s = "unset logscale y\nset yrange [0:" + std::to_string(hi * 1.15) + "]\n";
    s += "set format y " + gp_quote(fmt_lin) + "\n";
  }
  return s;
}

// Human labels for a nanosecond log axis.
const char* kNsTics =
    "(\"1 ns\" 1, \"10 ns\" 10, \"100 ns\" 100, \"1 us\" 1e3, \"10 us\" 1e4, \"100 us\" 1e5, \"1 ms\" 1e6, "
    "\"10 ms\" 1e7, \"100 ms\" 1e8, \"1 s\" 1e9, \"10 s\" 1e10)";

// Every other decade, for narrow panels.
const char* kNsTicsSparse =
    "(\"10 ns\" 10, \"1 us\" 1e3, \"100 us\" 1e5, \"10 ms\" 1e7, \"1 s\" 1e9, \"\" 100 1, \"\" 1e4 1, "
    "\"\" 1e6 1, \"\" 1e8 1)";

const CaseRuns* find_row(const std::vector<CaseRuns>& runs, const std::string& variant,
                         const std::string& impl) {
  for (const auto& r : runs)
    if (r.c->variant == variant && r.c->impl == impl) return &r;
  return nullptr;
}

std::vector<std::string> variants_of(const std::vector<CaseRuns>& runs) {
  std::vector<std::string> v;
  for (const auto& r : runs)
    if (std::find(v.begin(), v.end(), r.c->variant) == v.end()) v.push_back(r.c->variant);
  return v;
}

struct Plotter {
  std::string dir;
  std::ofstream gp;
  std::vector<std::string> pngs;

  std::string begin(const std::string& png, const std::string& title) {
    gp << "\nreset\nset terminal pngcairo size 1000,600 noenhanced font ',10'\nset output '" << png
       << ".png'\nset title " << gp_quote(title) << "\nset key outside right top\nset grid\n";
    pngs.push_back(dir + "/" + png + ".png");
    return "plot-data/" + png + ".dat";
  }

  // Bars of one metric over the rows of one variant: median with min-max, coloured by family.
  void bars(const std::vector<CaseRuns>& runs, const std::string& variant, const std::string& key,
            const std::string& png, const std::string& title, const std::string& ylabel) {
    std::vector<std::string> lines;
    double lo = INFINITY, hi = 0;
    bool other = false;
    for (const auto& r : runs) {
      Stat s;
      if (r.c->variant != variant || !stat_of(r, key, &s)) continue;
      char buf[256];
      snprintf(buf, sizeof buf, "%zu %s %.9g %.9g %.9g %ld", lines.size(), dq(row_name(*r.c)).c_str(),
               s.median, s.min, s.max, color_int(r.c->impl));
      lines.push_back(buf);
      if (s.min > 0) lo = std::min(lo, s.min);
      hi = std::max(hi, s.max);
      other |= family_of(r.c->impl) == Family::kOther;
    }
    if (lines.empty()) return;
    const std::string dat = begin(png, title);
    std::ofstream d(dir + "/" + dat);
    for (const auto& l : lines) d << l << "\n";
    gp << "set ylabel " << gp_quote(ylabel) << "\nset style fill solid 0.7\nset boxwidth 0.6\n"
       << "set xtics rotate by -30\nset xrange [-0.6:" << lines.size() - 0.4 << "]\n"
       << y_axis(lo, hi, "%.0s%c", "%g") << "plot '" << dat
       << "' using 1:3:6:xtic(2) with boxes lc rgb variable notitle, '' using 1:3:4:5 with yerrorbars lc rgb "
          "'black' pt 0 title 'min-max of the runs', "
       << family_keys(other) << "\n";
  }

  // Ratio of each row's median to the floor row's, per variant, as grouped bars.
  void ratio(const std::vector<CaseRuns>& runs, const std::string& key, const std::string& what,
             const std::string& base, const std::string& png, const std::string& title) {
    std::vector<std::string> lines, labels;
    double lo = INFINITY, hi = 0, x = 0;
    bool other = false;
    for (const auto& variant : variants_of(runs)) {
      const CaseRuns* b = find_row(runs, variant, base);
      Stat bs;
      if (!b || !stat_of(*b, key, &bs) || !(bs.median > 0)) continue;
      const double x0 = x;
      for (const auto& r : runs) {
        Stat s;
        if (r.c->variant != variant || r.c->impl == base || !stat_of(r, key, &s)) continue;
        const double v = s.median / bs.median;
        char buf[256];
        snprintf(buf, sizeof buf, "%g %s %.6g %ld", x, dq(row_name(*r.c)).c_str(), v, color_int(r.c->impl));
        lines.push_back(buf);
        if (v > 0) lo = std::min(lo, v);
        hi = std::max(hi, v);
        other |= family_of(r.c->impl) == Family::kOther;
        x += 1;
      }
      if (x > x0 && !variant.empty()) {
        char buf[256];
        snprintf(buf, sizeof buf, "set label %s at first %g, graph 1.025 center\n", gp_quote(variant).c_str(),
                 (x0 + x - 1) / 2);
        labels.push_back(buf);
      }
      x += 1;  // a gap between groups
    }
    if (lines.empty()) return;
    lo = std::min(lo, 1.0);
    hi = std::max(hi, 1.0);
    const std::string dat = begin(png, title);
    std::ofstream d(dir + "/" + dat);
    for (const auto& l : lines) d << l << "\n";
    for (const auto& l : labels) gp << l;
    const CaseRuns* any_base = nullptr;
    for (const auto& r : runs)
      if (r.c->impl == base) any_base = &r;
    const std::string base_name = any_base ? row_name(*any_base->c) : base;
    gp << "set ylabel " << gp_quote(what + " / " + base_name + "'s (x)")
       << "\nset style fill solid 0.7\nset boxwidth 0.7\nset xtics rotate by -45 font ',8'\nset xrange [-0.7:"
       << x - 0.3 << "]\nset tmargin 5\nset title offset 0,1.2\n"
       << y_axis(lo, hi, "%gx", "%gx") << "plot '" << dat
       << "' using 1:3:4:xtic(2) with boxes lc rgb variable notitle, 1 with lines lc rgb 'black' dt 2 lw 2 "
          "title "
       << gp_quote("1x = " + base_name) << ", " << family_keys(other) << "\n";
  }

  // Lines of one column of the writer's samples over time, one per row of a variant.
  void series(const std::vector<CaseRuns>& runs, const std::string& variant, int ycol, bool logy,
              const std::string& png, const std::string& title, const std::string& ylabel) {
    std::vector<std::string> names, blocks, empty;
    double phase = 0, lo = INFINITY, hi = 0;
    for (const auto& r : runs) {
      const CaseResult* run = last_ok(r);
      if (r.c->variant != variant || !run) continue;
      auto ph = run->metrics.find("phase_s");
      if (ph != run->metrics.end()) phase = std::max(phase, ph->second);
      auto it = run->series.find("series");
      std::string block;
      int kept = 0, na = 0;
      if (it != run->series.end())
        for (std::size_t i = 1; i < it->second.size(); ++i) {
          const auto& row = it->second[i];
          if (row.size() <= static_cast<std::size_t>(ycol)) continue;
          const double v = std::atof(row[static_cast<std::size_t>(ycol)].c_str());
          if (v < 0) {
            ++na;
            continue;
          }
          if (logy && v <= 0) continue;
          lo = std::min(lo, v);
          hi = std::max(hi, v);
          block += row[0] + " " + row[static_cast<std::size_t>(ycol)] + "\n";
          ++kept;
        }
      if (kept) {
        names.push_back(r.c->impl);
        blocks.push_back(block);
      } else {
        empty.push_back(row_name(*r.c) + (na     ? ": n/a (cannot tell)"
                                          : logy ? ": always 0 (not on a log scale)"
                                                 : ": no samples"));
      }
    }
    if (names.empty() && empty.empty()) return;
    const std::string dat = begin(png, title);
    std::ofstream d(dir + "/" + dat);
    for (const auto& b : blocks) d << b << "\n\n";
    gp << "set xlabel 'time (s)'\nset ylabel " << gp_quote(ylabel) << "\nset xrange [0:" << phase << "]\n";
    if (logy && lo > 0 && hi / lo > 30)
      gp << "set logscale y\nset format y '%.0s%c'\n";
    else
      gp << "set yrange [0:*]\nset format y '%.0s%c'\n";
    gp << "plot ";
    for (std::size_t i = 0; i < names.size(); ++i)
      gp << (i ? ", " : "") << "'" << dat << "' index " << i << " using 1:2 with lines lw 2 "
         << style_of(names[i]) << " title " << gp_quote(names[i]);
    for (std::size_t i = 0; i < empty.size(); ++i)
      gp << (names.empty() && i == 0 ? "" : ", ") << "NaN lc rgb 'white' title " << gp_quote(empty[i]);
    gp << "\n";
  }

  // 1 - CDF of latency histograms, one panel per variant.
  void hists(const std::vector<CaseRuns>& runs, const std::vector<std::string>& variants,
             const std::string& name, const std::string& png, const std::string& title) {
    std::vector<std::string> panels;
    std::ofstream d;
    std::string dat;
    int index = 0;
    std::vector<std::vector<std::pair<int, std::string>>> per_panel;
    for (const auto& variant : variants) {
      std::vector<std::pair<int, std::string>> entries;
      for (const auto& r : runs) {
        const CaseResult* run = last_ok(r);
        if (r.c->variant != variant || !run || !run->hists.count(name)) continue;
        if (dat.empty()) {
          dat = begin(png, title);
          d.open(dir + "/" + dat);
        }
        double total = 0;
        for (const auto& b : run->hists.at(name)) total += static_cast<double>(b.second);
        double at_least = total;
        for (const auto& [lo, n] : run->hists.at(name)) {
          d << std::max(lo, 0.5) << " " << at_least / total << "\n";
          at_least -= static_cast<double>(n);
        }
        d << "\n\n";
        entries.emplace_back(index++, r.c->impl + "|" + row_name(*r.c));
      }
      per_panel.push_back(entries);
    }
    if (dat.empty()) return;
    const int n = static_cast<int>(variants.size());
    gp << "set terminal pngcairo size " << (n > 1 ? 560 * n : 1000)
       << ",560 noenhanced font ',10'\nset output '" << png << ".png'\nunset title\nset multiplot layout 1,"
       << n << " title " << gp_quote(title)
       << "\nset key inside top right\nset logscale x\nset logscale y\nset xtics "
       << (n > 1 ? kNsTicsSparse : kNsTics)
       << "\nset format y '%g'\nset xlabel 'latency'\nset ylabel 'fraction of calls taking at least x'\n";
    for (int p = 0; p < n; ++p) {
      gp << "set title "
         << gp_quote(variants[static_cast<std::size_t>(p)].empty()
                         ? std::string("all calls")
                         : variants[static_cast<std::size_t>(p)] +
                               (variants[static_cast<std::size_t>(p)].find("reader") != std::string::npos
                                    ? " spinning"
                                    : ""))
         << "\nplot ";
      const auto& e = per_panel[static_cast<std::size_t>(p)];
      if (e.empty()) gp << "NaN title 'no data'";
      for (std::size_t i = 0; i < e.size(); ++i) {
        const std::string impl = e[i].second.substr(0, e[i].second.find('|'));
        const std::string label = e[i].second.substr(e[i].second.find('|') + 1);
        gp << (i ? ", " : "") << "'" << dat << "' index " << e[i].first << " using 1:2 with steps lw 2 "
           << style_of(impl) << " title " << gp_quote(label);
      }
      gp << "\n";
    }
    gp << "unset multiplot\n";
  }

  // A metric against a numeric variant ("16 threads" -> 16), one line per row, log x.
  void scaling(const std::vector<CaseRuns>& runs, const std::string& key, bool logy, const std::string& png,
               const std::string& title, const std::string& xlabel, const std::string& ylabel) {
    std::map<std::string, std::string> blocks;
    std::vector<std::string> order;
    double lo = INFINITY, hi = 0;
    for (const auto& r : runs) {
      Stat s;
      if (!stat_of(r, key, &s)) continue;
      const double x = std::atof(r.c->variant.c_str());
      const std::string name = row_name(*r.c);
      if (!blocks.count(name)) order.push_back(name);
      char buf[128];
      snprintf(buf, sizeof buf, "%g %.9g %.9g %.9g\n", x, s.median, s.min, s.max);
      blocks[name] += buf;
      if (s.min > 0) lo = std::min(lo, s.min);
      hi = std::max(hi, s.max);
    }
    if (order.empty()) return;
    std::map<std::string, std::string> impl_of;
    for (const auto& r : runs) impl_of[row_name(*r.c)] = r.c->impl;
    const std::string dat = begin(png, title);
    std::ofstream d(dir + "/" + dat);
    for (const auto& n : order) d << "# " << n << "\n" << blocks[n] << "\n\n";
    gp << "set xlabel " << gp_quote(xlabel) << "\nset ylabel " << gp_quote(ylabel)
       << "\nset logscale x 2\nset format x '%g'\nset xrange [*:*]\n"
       << (!(logy || (lo > 0 && hi / lo > 30)) ? std::string("set yrange [0:*]\nset format y '%g'\n")
           : ylabel.find("(ns)") != std::string::npos
               ? std::string("set logscale y\nset ytics ") + kNsTics + "\n"  // time labels: 1 us, 10 us
               : std::string("set logscale y\nset format y '%.0s%c'\n"))
       << "plot ";
    for (std::size_t i = 0; i < order.size(); ++i)
      gp << (i ? ", " : "") << "'" << dat << "' index " << i << " using 1:2:3:4 with yerrorlines lw 2 pt 7 "
         << style_of(impl_of[order[i]]) << " title " << gp_quote(order[i]);
    gp << "\n";
  }
};

}  // namespace

std::vector<std::string> make_plots(const std::vector<WorkloadDef>& defs,
                                    const std::vector<std::vector<CaseRuns>>& all, const std::string& dir,
                                    bool run, std::string* error) {
  mkdir((dir + "/plot-data").c_str(), 0777);
  const std::string script = dir + "/plots.gp";
  Plotter p;
  p.dir = dir;
  p.gp.open(script);
  p.gp << "# gnuplot script written by bulkrcu-bench; run: gnuplot plots.gp (from this directory)\n";

  for (std::size_t i = 0; i < defs.size(); ++i) {
    const WorkloadDef& w = defs[i];
    const auto& runs = all[i];
    if (w.file == "kfree_scale") {
      p.bars(runs, "", "cpu_ns_per_obj", "kfree_scale_cpu", "kfree-scale: CPU per object (all threads)",
             "CPU ns per object");
      p.ratio(runs, "cpu_ns_per_obj", "CPU ns/obj", "free", "kfree_scale_ratio",
              "kfree-scale: CPU per object / the floor's");
    } else if (w.file == "flood") {
      p.bars(runs, "flat out", "cpu_ns_per_obj", "flood_cpu",
             "flood, flat out: CPU per object (reader excluded)", "CPU ns per object");
      p.ratio(runs, "cpu_ns_per_obj", "CPU ns/obj", "free", "flood_ratio",
              "flood: CPU per object / the floor's, at each rate");
      p.series(runs, "flat out", 2, true, "flood_pending",
               "flood, flat out: objects retired, not yet freed (sampled by the writer every 10 ms)",
               "pending objects");
      p.series(runs, "flat out", 3, false, "flood_rss",
               "flood, flat out: resident memory (sampled by the writer)", "RSS (MiB)");
      p.series(runs, "5 M/s", 2, true, "flood_pending_5M", "flood at 5 M/s: objects retired, not yet freed",
               "pending objects");
    } else if (w.file == "read_mostly") {
      p.bars(runs, "95/5", "cpu_ns_per_op", "read_mostly_cpu", "read-mostly 95/5: CPU per operation",
             "CPU ns per operation");
      p.ratio(runs, "cpu_ns_per_op", "CPU ns/op", "free", "read_mostly_ratio",
              "read-mostly: CPU per operation / the floor's (free keeps replaced nodes)");
    } else if (w.file == "latency_retire") {
      p.hists(runs, {""}, "retire", "latency_retire_hist",
              "retire latency under the flood (last run of each)");
      p.ratio(runs, "p99_ns", "p99 ns", "free", "latency_retire_ratio",
              "retire latency: p99 / the floor's (free())");
    } else if (w.file == "latency_sync") {
      p.hists(runs, {"1 reader", "2 readers", "4 readers", "64 short-section threads"}, "sync",
              "latency_sync_hist", "synchronize latency (last run of each), 2 CPUs");
      p.ratio(runs, "p50_ns", "p50 ns", "urcu_call_rcu", "latency_sync_ratio",
              "synchronize p50 / liburcu synchronize_rcu's, by readers (no floor: liburcu is the base)");
    } else if (w.file == "scale_retire") {
      p.scaling(runs, "cpu_ns_per_obj", false, "scale_cpu", "scale: CPU per object against retiring threads",
                "retiring threads (2 CPUs)", "CPU ns per object");
      p.scaling(runs, "peak_rss_mb", false, "scale_rss", "scale: peak RSS against retiring threads",
                "retiring threads (2 CPUs)", "peak RSS (MiB)");
      p.ratio(runs, "cpu_ns_per_obj", "CPU ns/obj", "free", "scale_ratio",
              "scale: CPU per object / the floor's, by threads");
    } else if (w.file == "scale_sync") {
      p.scaling(runs, "p50_ns", true, "scale_sync", "scale: synchronize p50 against idle registered threads",
                "idle threads that once read", "p50 latency (ns)");
    } else if (w.file == "pool") {
      p.bars(runs, "1 thread, alloc/free pairs", "cpu_ns_per_page", "pool_cpu",
             "pool: CPU per page, 1 thread, alloc/free pairs", "CPU ns per page");
      p.ratio(runs, "cpu_ns_per_page", "CPU ns/page", "malloc", "pool_ratio",
              "pool: CPU per page / malloc(4096)'s");
    }
  }
  p.gp.close();
  if (!run) return {};
  std::string cmd = "cd '" + dir + "' && gnuplot plots.gp";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    *error = "gnuplot failed (exit " + std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1) +
             "); the data and " + script + " are kept";
    return {};
  }
  return p.pngs;
}

}  // namespace bench
