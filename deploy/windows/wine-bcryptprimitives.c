/* For tests under Wine only, never shipped: Rust's std (1.78 and later) takes its random bytes
 * from bcryptprimitives.dll!ProcessPrng, which every Windows 10+ has and Wine 8 lacks. This DLL
 * gives Wine that one function, backed by RtlGenRandom (advapi32!SystemFunction036). Built by
 * deploy/build-windows.sh into target/windows/dist/wine/. */
#include <windows.h>
#define RtlGenRandom SystemFunction036
BOOLEAN NTAPI RtlGenRandom(PVOID, ULONG);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
