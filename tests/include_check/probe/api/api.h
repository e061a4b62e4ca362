#pragma once

#include "base/base.h"

int Api();
