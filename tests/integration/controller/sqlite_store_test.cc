// What only SqliteStore does (the Store contract for every store is store_contract_test.cc).
#include <gtest/gtest.h>

#include "controller/store.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

TEST(SqliteStoreTest, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/regen/c.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/regen/c.db"), std::string::npos);
}

}  // namespace
}  // namespace regen
