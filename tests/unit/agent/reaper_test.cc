// ParseQemuCmdline: the subreaper names a dead qemu by the command line libvirt gave it.
#include "agent/reaper.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

std::string Cmdline(std::initializer_list<const char*> args) {
  std::string out;
  for (const char* a : args) {
    out += a;
    out += '\0';
  }
  return out;
}

TEST(ParseQemuCmdlineTest, LibvirtStyleGuestNameAndDomainId) {
  auto who = ParseQemuCmdline(Cmdline(
      {"/usr/bin/qemu-system-x86_64", "-name", "guest=crash-0,debug-threads=on", "-S", "-object",
       "{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\",\"file\":\"/tmp/r/lib/"
       "qemu/domain-17-crash-0/master-key.aes\"}"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "crash-0");
  EXPECT_EQ(who->domain_id, 17);
}

TEST(ParseQemuCmdlineTest, EscapedCommaAndPlainName) {
  auto who = ParseQemuCmdline(Cmdline({"qemu", "-name", "guest=a,,b,debug-threads=on"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "a,b");
  EXPECT_EQ(who->domain_id, -1);
  who = ParseQemuCmdline(Cmdline({"qemu", "-name", "plain"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "plain");
}

TEST(ParseQemuCmdlineTest, NoNameIsNotAGuest) {
  EXPECT_FALSE(ParseQemuCmdline(Cmdline({"qemu-img", "create", "-f", "qcow2", "x"})).has_value());
  EXPECT_FALSE(ParseQemuCmdline(Cmdline({"qemu", "-name"})).has_value());
  EXPECT_FALSE(ParseQemuCmdline("").has_value());
}

TEST(ParseQemuCmdlineTest, DomainDirectoryWithoutIdIsIgnored) {
  auto who =
      ParseQemuCmdline(Cmdline({"qemu", "-name", "guest=x", "-chardev", "path=/a/domain-x/m"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->domain_id, -1);
}

}  // namespace
}  // namespace regen
