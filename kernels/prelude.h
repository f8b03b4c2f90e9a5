/* Prepended to every kernel program (flattened by the C preprocessor at build
 * time, see CMakeLists.txt): Random123's Philox4x32-10 for OpenCL C. */
#define R123_USE_PHILOX_64BIT 0
#include <Random123/philox.h>
