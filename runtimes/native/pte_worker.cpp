// edgeasr's native ExecuTorch worker: runs an edgeasr .pte with ExecuTorch's C++ runtime and XNNPACK, the way
// an app's runtime does (no Python, no torch in the process), so its memory and speed are the app's.
//
// Built and started by runtimes/pte_native.py. Requests and replies are runtimes/framing.py messages on
// stdin / stdout: one JSON header line, then (if the header has "nbytes") that many raw bytes of an array.
// Strings the worker must read (paths, method names) come as uint8 arrays, so it parses no JSON strings.
//
// Requests ("op"): open {threads, load_mode[, adapter_bytes]} + path bytes (the program's path, then the last
// adapter_bytes of them: a user's adapter file, ExecuTorch named data, loaded with it); load (the encoder and
// text decoder methods, after the runner has checked the program's methods); constant + method-name bytes -> {int} or a uint8
// array (a string); methods -> the names, one per line (uint8); encode + float32 features (n_mels, n_frames); step {token, position} -> float32 logits of
// the last position; memory -> {rss, hwm}; reset_peak. Replies carry "ok", or "error" with a message.

#include <executorch/extension/module/module.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::module::Module;
using executorch::runtime::EValue;

// ExecuTorch's threadpool, as libexecutorch_threadpool.so exports it: the wheel ships the library but not the
// header, so the two members used here are declared as that header declares them.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

// The method names of runtimes/contract.py (PTE_ENCODER, PTE_TEXT_DECODER).
const char* kEncoder = "encoder";
const char* kTextDecoder = "text_decoder";

std::string escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out;
}

// The value of `"key": ...` in a header written by json.dumps: a number, or the text of a string without
// escapes (op names and dtype codes); empty when the key is absent.
std::string field(const std::string& header, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = header.find(needle);
  if (at == std::string::npos) {
    return "";
  }
  size_t start = at + needle.size();
  if (header[start] == '"') {
    const size_t end = header.find('"', start + 1);
    return header.substr(start + 1, end - start - 1);
  }
  size_t end = start;
  while (end < header.size() && header[end] != ',' && header[end] != '}') {
    ++end;
  }
  return header.substr(start, end - start);
}

int64_t status_bytes(const std::string& name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      std::istringstream values(line.substr(name.size() + 1));
      int64_t kib = 0;
      values >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

void reply(const std::string& header, const void* data = nullptr, size_t nbytes = 0, const char* dtype = "",
           const std::vector<int64_t>& shape = {}) {
  std::string line = "{" + header;
  if (data != nullptr) {
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) {
      dims += (i ? ", " : "") + std::to_string(shape[i]);
    }
    line += std::string(header.empty() ? "" : ", ") + "\"dtype\": \"" + dtype + "\", \"shape\": [" + dims +
            "], \"nbytes\": " + std::to_string(nbytes);
  }
  line += "}\n";
  std::cout.write(line.data(), line.size());
  if (data != nullptr) {
    std::cout.write(static_cast<const char*>(data), nbytes);
  }
  std::cout.flush();
}

void fail(const std::string& message) { reply("\"error\": \"" + escaped(message) + "\""); }

std::string error_name(executorch::runtime::Error error) {
  return "ExecuTorch error " + std::to_string(static_cast<int>(error));
}

Module::LoadMode load_mode(const std::string& name) {
  if (name == "file") {
    return Module::LoadMode::File;
  }
  return Module::LoadMode::Mmap;
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::unique_ptr<Module> module;
  std::vector<EValue> encoded;
  std::vector<float> features;  // the encoder's input, kept alive while the encoder runs
  std::string program_path;     // the open program's, for messages
  reply("\"ok\": true, \"version\": \"native\", \"rss\": " + std::to_string(status_bytes("VmRSS")));
  std::string header;
  while (std::getline(std::cin, header)) {
    std::vector<char> payload;
    const std::string nbytes = field(header, "nbytes");
    if (!nbytes.empty()) {
      payload.resize(std::stoull(nbytes));
      if (!std::cin.read(payload.data(), payload.size())) {
        return 1;  // the runner ended mid-message
      }
    }
    const std::string op = field(header, "op");
    if (op == "open") {
      const std::string adapter_bytes = field(header, "adapter_bytes");
      const size_t adapter_size = adapter_bytes.empty() ? 0 : std::stoull(adapter_bytes);
      if (adapter_size > payload.size()) {
        fail("the adapter path is longer than the paths sent");
        continue;
      }
      const std::string path(payload.begin(), payload.end() - adapter_size);
      program_path = path;
      const std::string adapter(payload.end() - adapter_size, payload.end());
      auto threads = std::stoul(field(header, "threads"));
      executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);
      const std::string sharing = field(header, "workspace_sharing");
      if (!sharing.empty()) {
        // XNNPACK's workspace sharing across the program's delegates: 0 none, 1 per model, 2 global
        executorch::runtime::BackendOptions<1> options;
        options.set_option("workspace_sharing_mode", std::stoi(sharing));
        const auto error = executorch::runtime::set_option("XnnpackBackend", options.view());
        if (error != executorch::runtime::Error::Ok) {
          fail("XNNPACK refused workspace sharing mode " + sharing + ": " + error_name(error));
          continue;
        }
      }
      const auto mode = load_mode(field(header, "load_mode"));
      module = adapter.empty() ? std::make_unique<Module>(path, mode) : std::make_unique<Module>(path, adapter, mode);
      const auto error = module->load();  // the program only: the runner checks its methods before loading them
      if (error != executorch::runtime::Error::Ok) {
        fail("could not load the program " + path + ": " + error_name(error));
        module.reset();
      } else {
        reply("\"ok\": true");
      }
    } else if (op == "memory") {  // answered with or without a program
      reply("\"ok\": true, \"rss\": " + std::to_string(status_bytes("VmRSS")) +
            ", \"hwm\": " + std::to_string(status_bytes("VmHWM")));
    } else if (module == nullptr) {
      fail("no program is open");
    } else if (op == "load") {  // both methods, with their planned memory
      bool loaded = true;
      for (const char* method : {kEncoder, kTextDecoder}) {
        const auto error = module->load_method(method);
        if (error != executorch::runtime::Error::Ok) {
          fail(std::string("could not load method ") + method + " of " + program_path + ": " + error_name(error));
          loaded = false;
          break;
        }
      }
      if (loaded) {
        reply("\"ok\": true");
      }
    } else if (op == "methods") {
      auto names = module->method_names();
      std::string joined;
      for (const auto& name : *names) {
        joined += (joined.empty() ? "" : "\n") + name;
      }
      reply("\"ok\": true", joined.data(), joined.size(), "|u1", {static_cast<int64_t>(joined.size())});
    } else if (op == "constant") {
      const std::string name(payload.begin(), payload.end());
      auto result = module->execute(name);
      if (!result.ok() || result->empty()) {
        fail("the program has no constant method " + name);
      } else if ((*result)[0].isInt()) {
        reply("\"ok\": true, \"int\": " + std::to_string((*result)[0].toInt()));
      } else if ((*result)[0].isString()) {
        const auto text = (*result)[0].toString();
        reply("\"ok\": true", text.data(), text.size(), "|u1", {static_cast<int64_t>(text.size())});
      } else {
        fail("constant method " + name + " returned neither an int nor a string");
      }
    } else if (op == "encode") {
      const int64_t n_mels = std::stoll(field(header, "shape").substr(1));
      const int64_t n_frames = static_cast<int64_t>(payload.size() / sizeof(float)) / n_mels;
      features.assign(reinterpret_cast<const float*>(payload.data()),
                      reinterpret_cast<const float*>(payload.data()) + n_mels * n_frames);
      auto input = from_blob(features.data(), {1, static_cast<int>(n_mels), static_cast<int>(n_frames)});
      auto result = module->execute(kEncoder, EValue(*input));
      if (!result.ok()) {
        fail("the encoder failed: " + error_name(result.error()));
      } else {
        encoded = *result;
        reply("\"ok\": true");
      }
    } else if (op == "step") {
      int64_t token = std::stoll(field(header, "token"));
      int64_t position = std::stoll(field(header, "position"));
      auto tokens = from_blob(&token, {1, 1}, ScalarType::Long);
      auto positions = from_blob(&position, {1}, ScalarType::Long);
      std::vector<EValue> inputs{EValue(*tokens)};
      inputs.insert(inputs.end(), encoded.begin(), encoded.end());
      inputs.emplace_back(*positions);
      auto result = module->execute(kTextDecoder, inputs);
      if (!result.ok()) {
        fail("the decoder failed: " + error_name(result.error()));
      } else {
        const auto& logits = (*result)[0].toTensor();
        const int64_t vocab = logits.size(logits.dim() - 1);
        const float* last = logits.const_data_ptr<float>() + (logits.numel() - vocab);
        reply("\"ok\": true", last, vocab * sizeof(float), "<f4", {vocab});
      }
    } else if (op == "reset_peak") {
      std::ofstream clear("/proc/self/clear_refs");
      clear << "5";
      clear.close();
      reply(std::string("\"ok\": ") + (clear.fail() ? "false" : "true"));
    } else {
      fail("unknown request " + op);
    }
  }
  return 0;
}
