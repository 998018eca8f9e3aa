// libFuzzer target: store row decoding (controller/store_codec.cc, upgrade_codec.cc): the JSON
// text of a row as SqliteStore and EtcdStore read it, decoded as every row kind. A damaged row must
// give an error (Status), never an exception or a crash; a row that decodes encodes and decodes
// again to the same record.
#include <cstddef>
#include <cstdint>
#include <string>

#include "controller/store_codec.h"
#include "controller/upgrade.h"
#include "tests/fuzz/fuzz_util.h"

using regen::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)regen::ParseUpgradeStateJson(text);
  auto row = regen::ParseRecord(text, "fuzz row");
  if (!row.ok()) return 0;
  const nlohmann::json& j = *row;
  if (auto h = regen::HostFromJson("host-1", j); h.ok()) {
    auto back = regen::HostFromJson("host-1", regen::HostToJson(*h));
    Check(back.ok() && back->address == h->address && back->state == h->state,
          "host row does not round-trip");
  }
  if (auto i = regen::InstanceFromJson("web-0", j); i.ok()) {
    auto back = regen::InstanceFromJson("web-0", regen::InstanceToJson(*i));
    Check(back.ok() && back->allocation.ip == i->allocation.ip && back->state == i->state,
          "instance row does not round-trip");
  }
  if (auto s = regen::ServiceFromJson("web", j); s.ok()) {
    (void)regen::ServiceToJson(*s);
  }
  if (auto o = regen::OperationFromJson("op-1", j); o.ok()) {
    (void)regen::OperationToJson(*o);
  }
  if (auto e = regen::EventFromJson(1, j); e.ok()) {
    auto back = regen::EventFromJson(1, regen::EventToJson(*e));
    Check(back.ok() && back->kind == e->kind && back->message == e->message,
          "event row does not round-trip");
  }
  return 0;
}
