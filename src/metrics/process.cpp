// The process_* facts from /proc/self (Linux), as the Prometheus client
// libraries export them.

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/prometheus.hpp"

namespace portier::metrics {

namespace {
double boot_time() {
  std::ifstream f("/proc/stat");
  std::string key;
  double v = 0;
  while (f >> key) {
    if (key == "btime") {
      f >> v;
      return v;
    }
    f.ignore(1 << 20, '\n');
  }
  return 0;
}

double count_open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  double n = 0;
  const int own = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == own) continue;  // the listing's own descriptor
    ++n;
  }
  closedir(d);
  return n;
}
}  // namespace

ProcessFacts process_facts() {
  ProcessFacts p;
  const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream f("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // After "pid (comm) ": field 3 (state) onwards; comm may hold spaces.
  if (auto close = s.rfind(')'); close != std::string::npos && tck > 0) {
    std::istringstream in(s.substr(close + 2));
    std::vector<std::string> v;
    for (std::string x; in >> x;) v.push_back(x);
    // v[0] is field 3: utime 14, stime 15, starttime 22, vsize 23, rss 24.
    if (v.size() > 21) {
      p.cpu_seconds = (std::stod(v[11]) + std::stod(v[12])) / tck;
      p.start_time_seconds = boot_time() + std::stod(v[19]) / tck;
      p.virtual_memory_bytes = std::stod(v[20]);
      p.resident_memory_bytes = std::stod(v[21]) * page;
    }
  }
  p.open_fds = count_open_fds();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    p.max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : static_cast<double>(rl.rlim_cur);
  return p;
}

}  // namespace portier::metrics
