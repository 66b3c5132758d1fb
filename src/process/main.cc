// baton's entry point: the command line (nginx's habits), -t/-T, -s, and the start of the master.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#include <fstream>
#include <vector>

#include "config.h"
#include "core/clock.h"
#include "core/log.h"
#include "event/tls.h"
#include "os/unix/control.h"
#include "os/unix/process.h"
#include "process/cycle.h"
#include "process/master.h"
#include "process/start_checks.h"

namespace baton {
namespace {

void usage(FILE* out) {
  fprintf(out,
          "Usage: baton [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]\n"
          "\n"
          "Options:\n"
          "  -?,-h         : this help\n"
          "  -v            : show version and exit\n"
          "  -V            : show version and configure options then exit\n"
          "  -t            : test configuration and exit\n"
          "  -T            : test configuration, dump it and exit\n"
          "  -q            : suppress non-error messages during configuration testing\n"
          "  -s signal     : tell the master: stop, quit, reopen, reload, upgrade, status\n"
          "  -p prefix     : set prefix path (default: " BATON_PREFIX "/)\n"
          "  -e filename   : set error log file (default: " BATON_ERROR_LOG_PATH ")\n"
          "  -c filename   : set configuration file (default: " BATON_CONF_PATH ")\n"
          "  -g directives : set [main] settings: 'key = value; key = value'\n");
}

std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (!getcwd(cwd, sizeof(cwd))) return path;
  return std::string(cwd) + "/" + path;
}

// Where the running master is: its pid file and control socket, from the configuration's [main]
// (and -g) alone, read leniently: a configuration being edited may be broken anywhere, even in
// [main], and must still lead to the master it is meant for, not to the default pid file.
void locate_master(const Options& opts, std::string* pid_path, std::string* control) {
  std::string pid = default_pid_path();
  std::string socket = MainConf().control_socket;
  ConfFile conf = read_conf_file_lenient(opts.conf_path);
  ConfFile globals = read_conf_text_lenient("-g", "");
  if (!opts.globals.empty()) {
    try {
      globals = read_conf_globals(opts.globals);
    } catch (const ConfError&) {
      // the -g of this command may be broken as well: take what the file says
    }
  }
  for (const ConfFile* f : {&conf, &globals})
    for (const ConfSection& sec : f->sections) {
      if (sec.kind != "main") continue;
      for (const ConfEntry& e : sec.entries) {
        if (e.key == "pid" && !e.value.empty()) pid = e.value;
        if (e.key == "control_socket" && !e.value.empty()) socket = e.value;
      }
    }
  *pid_path = resolve_path(opts.prefix, pid);
  *control = socket == "abstract" ? "abstract" : resolve_path(opts.prefix, socket);
}

long read_pid(const std::string& pid_path) {
  std::ifstream in(pid_path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  return pid;
}

// reload, upgrade, status: asked over the control socket, answered when the outcome is known.
int control_command(const Options& opts) {
  std::string pid_path, control;
  locate_master(opts, &pid_path, &control);
  ControlAddress addr;
  if (control == "abstract") {
    long pid = read_pid(pid_path);
    if (!pid) {
      fprintf(stderr, "baton: %s failed: no master process (invalid or missing pid file \"%s\")\n", opts.signal.c_str(),
              pid_path.c_str());
      return 1;
    }
    addr = make_control_address("abstract", static_cast<pid_t>(pid));
  } else {
    addr = make_control_address(control, 0);
  }
  std::string err;
  Fd fd = connect_control(addr, &err);
  if (!fd) {
    fprintf(stderr, "baton: %s failed: no master process answers (%s)\n", opts.signal.c_str(), err.c_str());
    return 1;
  }
  MsgType type = opts.signal == "reload" ? MsgType::kReload : opts.signal == "upgrade" ? MsgType::kUpgrade : MsgType::kStatus;
  if (send_message(fd.get(), Message(type)) < 0) {
    fprintf(stderr, "baton: %s failed: %s\n", opts.signal.c_str(), strerror(errno));
    return 1;
  }
  Message r;
  // The master answers when the new generation is ready or has been rolled back; its own timeouts
  // bound that, this one only guards against a master that stopped answering.
  int got = recv_message_timeout(fd.get(), &r, 10 * 60 * 1000);
  if (got != 1 || r.type != MsgType::kResult) {
    fprintf(stderr, "baton: %s failed: the master closed the control connection without an answer\n", opts.signal.c_str());
    return 1;
  }
  if (r.get("ok") != "1") {
    fprintf(stderr, "baton: %s failed: %s\n", opts.signal.c_str(), r.get("reason").c_str());
    return 1;
  }
  if (type == MsgType::kStatus) {
    long long n = r.get_int("lines");
    for (long long i = 0; i < n; i++) printf("%s\n", r.get("line" + std::to_string(i)).c_str());
  } else if (type == MsgType::kUpgrade) {
    printf("upgrade succeeded: master pid %s, generation %s\n", r.get("pid").c_str(), r.get("generation").c_str());
  } else {
    printf("reload succeeded: generation %s\n", r.get("generation").c_str());
  }
  return 0;
}

int send_signal(const Options& opts) {
  if (opts.signal == "reload" || opts.signal == "upgrade" || opts.signal == "status") return control_command(opts);
  static const struct {
    const char* name;
    int sig;
  } kSignals[] = {{"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}};
  int sig = 0;
  for (const auto& s : kSignals)
    if (opts.signal == s.name) sig = s.sig;
  if (!sig) {
    fprintf(stderr, "baton: invalid option: \"-s %s\" (stop, quit, reopen, reload, upgrade or status)\n",
            opts.signal.c_str());
    return 1;
  }
  std::string pid_path, control;
  locate_master(opts, &pid_path, &control);
  long pid = read_pid(pid_path);
  if (!pid) {
    fprintf(stderr, "baton: [error] invalid or missing pid file \"%s\"\n", pid_path.c_str());
    return 1;
  }
  if (kill(static_cast<pid_t>(pid), sig) < 0) {
    fprintf(stderr, "baton: [error] kill(%ld, %d) failed (%s)\n", pid, sig, strerror(errno));
    return 1;
  }
  return 0;
}

int run() {
  // The title was rewritten over argv: read the copy.
  std::vector<const char*> args;
  for (const std::string& a : saved_argv()) args.push_back(a.c_str());
  int argc = static_cast<int>(args.size());
  const char* const* argv = args.data();
  Options opts;
  bool show_version = false, show_configure = false;
  std::string conf_arg, prefix_arg;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (a[0] != '-' || a[1] == '\0') {
      fprintf(stderr, "baton: invalid option: \"%s\"\n", a);
      usage(stderr);
      return 1;
    }
    for (const char* p = a + 1; *p; p++) {
      auto value = [&](std::string* dst) -> bool {
        if (p[1]) {
          *dst = p + 1;
        } else if (i + 1 < argc) {
          *dst = argv[++i];
        } else {
          fprintf(stderr, "baton: option \"-%c\" requires an argument\n", *p);
          return false;
        }
        return true;
      };
      switch (*p) {
        case '?':
        case 'h': usage(stdout); return 0;
        case 'v': show_version = true; continue;
        case 'V': show_version = show_configure = true; continue;
        case 't': opts.test = true; continue;
        case 'T': opts.test = opts.dump = true; continue;
        case 'q': opts.quiet = true; continue;
        case 'p':
          if (!value(&prefix_arg)) return 1;
          break;
        case 'c':
          if (!value(&conf_arg)) return 1;
          break;
        case 'e':
          if (!value(&opts.error_log)) return 1;
          break;
        case 'g':
          if (!value(&opts.globals)) return 1;
          break;
        case 's':
          if (!value(&opts.signal)) return 1;
          break;
        default:
          fprintf(stderr, "baton: invalid option: \"%c\"\n", *p);
          usage(stderr);
          return 1;
      }
      break;  // an option with a value ends this argument
    }
  }
  if (show_version) {
    printf("baton version: baton/%s\n", BATON_VERSION);
    if (show_configure) {
      printf("built by %s\n", BATON_CC_VERSION);
      printf("built with %s\n", tls_library_version().c_str());
      printf("configure arguments: %s\n", BATON_CONFIGURE_ARGS);
    }
    if (!opts.test && opts.signal.empty()) return 0;
  }
  opts.prefix = absolute(prefix_arg.empty() ? std::string(BATON_PREFIX) : prefix_arg);
  while (opts.prefix.size() > 1 && opts.prefix.back() == '/') opts.prefix.pop_back();
  opts.conf_path = conf_arg.empty() ? resolve_path(opts.prefix, BATON_CONF_PATH) : absolute(conf_arg);
  opts.exe_path = executable_path(saved_argv()[0].c_str());

  if (!opts.signal.empty()) return send_signal(opts);
  if (const char* state = getenv("BATON_RESUME"); state && !opts.test) return resumed_master_main(opts, state);
  if (const char* up = getenv("BATON_UPGRADE"); up && strcmp(up, "1") == 0 && !opts.test) return upgraded_master_main(opts);

  std::unique_ptr<Cycle> cycle;
  try {
    cycle = load_cycle(opts);
  } catch (const ConfError& e) {
    fprintf(stderr, "baton: [emerg] %s\n", e.what());
    if (opts.test) fprintf(stderr, "baton: configuration file %s test failed\n", opts.conf_path.c_str());
    return 1;
  }
  if (opts.test) {
    // What would stop the start though the configuration reads well.
    std::vector<std::string> problems = check_start(*cycle);
    if (!problems.empty()) {
      for (const std::string& p : problems) fprintf(stderr, "baton: [emerg] %s\n", p.c_str());
      fprintf(stderr, "baton: configuration file %s test failed\n", opts.conf_path.c_str());
      return 1;
    }
    if (!opts.quiet) {
      fprintf(stderr, "baton: the configuration file %s syntax is ok\n", opts.conf_path.c_str());
      fprintf(stderr, "baton: configuration file %s test is successful\n", opts.conf_path.c_str());
    }
    if (opts.dump) {
      // Every file the configuration was read from, as it was read (nginx's -T).
      std::vector<const ConfSource*> files;
      ConfSource main_file{cycle->conf.path, cycle->conf.text};
      files.push_back(&main_file);
      for (const ConfSource& f : cycle->conf.included) files.push_back(&f);
      for (const ConfSource& f : cycle->http->files_read) files.push_back(&f);
      for (const ConfSource* f : files) {
        printf("# configuration file %s:\n", f->path.c_str());
        fwrite(f->text.data(), 1, f->text.size(), stdout);
        if (!f->text.empty() && f->text.back() != '\n') putchar('\n');
        putchar('\n');
      }
      fflush(stdout);
    }
    return 0;
  }

  // Until the workers are ready, what stops the start is also said on the terminal.
  ErrorLog::echo_emerg_to_stderr(true);
  std::string err = ErrorLog::open(cycle->error_log_path(), cycle->main.log_level);
  if (!err.empty()) {
    fprintf(stderr, "baton: [emerg] %s\n", err.c_str());
    return 1;
  }
  return master_process_main(std::move(cycle));
}

}  // namespace
}  // namespace baton

int main(int argc, char** argv) {
  baton::init_proc_title(argc, argv);
  baton::Clock::update();
  return baton::run();
}
