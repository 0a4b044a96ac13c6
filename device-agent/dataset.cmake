# Datasets for `tinyfed-agent simulate`: CSV and UCI digits loading, the
# stratified split, standardization and int8 quantization, and device
# partitions. Included from device-agent/CMakeLists.txt.
find_package(absl CONFIG REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)

add_library(tinyfed_agent_data STATIC ${CMAKE_CURRENT_LIST_DIR}/dataset.cc)
target_include_directories(tinyfed_agent_data PUBLIC ${CMAKE_CURRENT_LIST_DIR})
# tinyfed_common_host: quantization rounds exactly as every other host
# component does (tinyfed_common/host_numerics.h).
target_link_libraries(tinyfed_agent_data PUBLIC
  Eigen3::Eigen absl::status absl::statusor absl::strings
  PRIVATE tinyfed_common_host)
target_compile_features(tinyfed_agent_data PUBLIC cxx_std_20)
target_compile_options(tinyfed_agent_data PRIVATE -Wall -Wextra -Werror)
