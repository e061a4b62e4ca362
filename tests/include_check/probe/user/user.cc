#include "base/base.h"

int User() { return Base() + 2; }
