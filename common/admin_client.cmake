# regen_admin_client: AdminClient, the typed client of the controller's AdminService (regenctl,
# regen-agent failover/drain).
add_library(regen_admin_client STATIC ${CMAKE_CURRENT_LIST_DIR}/admin_client.cc)
target_link_libraries(regen_admin_client PUBLIC regen_proto regen_common regen_grpc_tls)
