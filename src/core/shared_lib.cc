// The shared library flatattn::flatattn is flatattn_core linked whole; this file gives the target a source.
#include "flatattn/flatattn.h"
